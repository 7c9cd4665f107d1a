/* sockstream._speedups: the compiled twin of the input buffer's hot verbs.
 *
 * Design (see docs/accel.md)
 *   ``InputBufferBase`` holds the state of ``_buffer.InputBuffer`` (same attribute names: _buf,
 *   _pos, _end, _epoch, ...) as C fields, exposed as members, so every pure-Python method of
 *   ``InputBuffer`` runs unchanged on it (``_impl`` builds the class: the Python methods, with
 *   the verbs below replaced by these C methods).  The C verbs handle what is buffered; for
 *   everything else they call the same Python methods the pure class would (``settle``,
 *   ``_take_line``, ``_take_until``, the stream's ``_slow_*``).
 *
 * Safety
 *   Every index is checked against the bytearray's real size; a state that does not hold the
 *   invariants (a non-bytearray ``_buf``, pos/end out of range, a deleted attribute) never
 *   takes a fast path.  A fast path reads the state, builds its result and commits only if the
 *   state is unchanged (pos, epoch, batch, the bytearray): nothing between reading and writing
 *   runs Python code, and a result built after another thread moved on is dropped, as the
 *   Python compare-and-set does.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

#if PY_VERSION_HEX >= 0x030C0000
#define SS_T_PYSSIZET Py_T_PYSSIZET
#define SS_T_OBJECT_EX Py_T_OBJECT_EX
#else
#define SS_T_PYSSIZET T_PYSSIZET
#define SS_T_OBJECT_EX T_OBJECT_EX
#endif

/* A hot path to inline into each verb (one frame a line, not two). */
#if defined(__GNUC__) || defined(__clang__)
#define SS_HOT inline __attribute__((always_inline))
#define SS_COLD __attribute__((noinline))
#else
#define SS_HOT inline
#define SS_COLD
#endif

/* Line kinds (as _buffer). */
#define STR_LINE 0
#define STR_LINE_NL 1
#define BYTES_LINE_NL 2

/* _max_line's state. */
#define MLL_NONE 0
#define MLL_INT 1
#define MLL_OTHER 2

typedef struct {
    PyObject_HEAD
    PyObject *buf; /* bytearray (checked on every use) */
    Py_ssize_t pos, end, epoch, scan, mark, run, window, size, kind;
    PyObject *max_line;
    Py_ssize_t mll;
    int mll_state;
    PyObject *batch, *settling, *until;
    PyObject *slow_char, *slow_byte, *slow_line, *slow_seq, *slow_read_line, *table;
    /* The refill (see ``refill``): a weak reference to the stream, its ``_fill`` and
     * ``_line_end`` functions (None: the verbs take the slow paths instead). */
    PyObject *owner, *fill, *line_end;
    PyObject *next_line, *next_line_tuple, *next_until, *until_delimiter;
    /* The text buffer's settings (NULL codec: a plain buffer, Latin-1 and LF). */
    PyObject *codec, *newline, *last;
    PyObject *canonical, *errors; /* str, from the codec */
    int codec_kind;               /* _text's LATIN1 .. MULTI; -1: the Python paths decide */
    int nl_mode;                  /* NL_LF, NL_CRLF, NL_LENIENT; -1: the Python paths */
    int strict;                   /* errors == "strict" */
    /* The text window: whole lines of buf[wstart:wend] decoded once (strict UTF-8, ASCII or
     * Latin-1), served as substrings; valid while nothing but the window moved pos (every
     * other commit, in C or from Python through the _pos/_buf/_epoch setters, clears wvalid)
     * and the bytearray and epoch are the ones it was cut from. */
    PyObject *wtext, *wbuf;
    Py_ssize_t wepoch, wbyte, wend, wchar;
    int wvalid;
    /* The last ``(line, False)`` made: reused while nobody else holds it (as zip and
     * enumerate reuse their result tuple), which saves a tuple per read_line. */
    PyObject *pair;
} Buf;

#define SET_POS(self, v) ((self)->wvalid = 0, (self)->pos = (v))
/* A window's size in bytes (at most; it ends at its last whole line). */
#define WINDOW_BYTES 32768

/* Codec kinds (as _text). */
#define K_LATIN1 0
#define K_ASCII 1
#define K_UTF8 2
/* Newline modes. */
#define NL_LF 0
#define NL_CRLF 1
#define NL_LENIENT 2

static PyObject *str_settle, *str_take_line, *str_take_until, *str_maybe_take_line;
static PyObject *str_py_maybe_take_line, *str_py_maybe_take_char, *str_py_peek_char;
static PyObject *str_py_has_char, *str_canonical, *str_errors, *str_kind;
static PyObject *str_py_read_char, *str_py_readline, *str_py_read_line, *str_py_read_sequence;
static PyObject *int_minus_one, *int_zero, *str_crlf;
#define NO_BATCH ((PyObject *)Py_TYPE(Py_None))

/* The bytes, if the state holds the invariants: 0 <= pos <= end <= len(buf). */
static inline const char *
valid_bytes(Buf *self)
{
    PyObject *buf = self->buf;
    if (buf == NULL || !PyByteArray_CheckExact(buf))
        return NULL;
    if (self->pos < 0 || self->pos > self->end || self->end > PyByteArray_GET_SIZE(buf))
        return NULL;
    return PyByteArray_AS_STRING(buf);
}

/* The state has not moved since it was read (the compare of a compare-and-set). */
#define UNCHANGED(self, p, e, b) \
    ((self)->pos == (p) && (self)->epoch == (e) && (self)->batch == Py_None && (self)->buf == (b) \
     && (self)->end <= PyByteArray_GET_SIZE(b))

/* ---- argument parsing (vectorcall: no tuple, no dict) ----------------------------------- */

static int
parse_args(const char *fname, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
           const char *const *names, Py_ssize_t nnames, Py_ssize_t required, PyObject **out)
{
    Py_ssize_t i, j;
    if (nargs > nnames) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %zd arguments (%zd given)", fname,
                     nnames, nargs);
        return -1;
    }
    for (i = 0; i < nargs; i++)
        out[i] = args[i];
    if (kwnames != NULL) {
        Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
        for (j = 0; j < nkw; j++) {
            PyObject *key = PyTuple_GET_ITEM(kwnames, j);
            for (i = 0; i < nnames; i++) {
                if (PyUnicode_CompareWithASCIIString(key, names[i]) == 0)
                    break;
            }
            if (i == nnames) {
                PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'",
                             fname, key);
                return -1;
            }
            if (out[i] != NULL) {
                PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'",
                             fname, names[i]);
                return -1;
            }
            out[i] = args[nargs + j];
        }
    }
    for (i = 0; i < required; i++) {
        if (out[i] == NULL) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", fname,
                         names[i]);
            return -1;
        }
    }
    return 0;
}

static PyObject *
call_method(Buf *self, PyObject *name, PyObject *const *args, size_t nargs)
{
    PyObject *stack[4];
    size_t i;
    stack[0] = (PyObject *)self;
    for (i = 0; i < nargs && i < 3; i++)
        stack[i + 1] = args[i];
    return PyObject_VectorcallMethod(name, stack, (nargs + 1) | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                     NULL);
}

static PyObject *
call_slow(PyObject *fn, PyObject *const *args, size_t nargs)
{
    if (fn == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "InputBuffer.serve_elements was not called");
        return NULL;
    }
    return PyObject_Vectorcall(fn, args, nargs, NULL);
}

/* ``if self._batch is not None: self.settle()`` */
static int
settle_if_batch(Buf *self)
{
    PyObject *r;
    if (self->batch == Py_None)
        return 0;
    r = call_method(self, str_settle, NULL, 0);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

static PyObject *text_take_char_fast(Buf *self);
static PyObject *text_peek_char_fast(Buf *self);
static PyObject *text_take_line_fast(Buf *self, Py_ssize_t kind);
static PyObject *text_decode(Buf *self, PyObject *buf, Py_ssize_t pos, Py_ssize_t n);
static Py_ssize_t find_crlf(const char *b, Py_ssize_t start, Py_ssize_t end);

/* A text buffer's verb after its fast path failed: the pure method (saved as ``_py_<verb>``). */
static PyObject *
call_py(Buf *self, PyObject *name, PyObject *arg)
{
    return call_method(self, name, &arg, arg == NULL ? 0 : 1);
}

/* A batch is being served (the twin cuts none, but a state handed over may hold one): the
 * pure verb, saved as ``_py_<verb>``, with the same arguments. */
static PyObject *
defer(Buf *self, PyObject *name, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *stack[8];
    Py_ssize_t i, total = nargs + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
    if (total > 7) {
        PyErr_SetString(PyExc_TypeError, "too many arguments");
        return NULL;
    }
    stack[0] = (PyObject *)self;
    for (i = 0; i < total; i++)
        stack[i + 1] = args[i];
    return PyObject_VectorcallMethod(name, stack, (size_t)(nargs + 1), kwnames);
}

/* ---- characters and bytes ---------------------------------------------------------------- */

static const char *const eof_names[] = {"eof_error", "eof_value"};

static PyObject *
Buf_read_char(Buf *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *a[2] = {NULL, NULL};
    PyObject *stack[2];
    const char *b;
    if (self->batch != Py_None)
        return defer(self, str_py_read_char, args, nargs, kwnames);
    if ((nargs > 2 || kwnames != NULL)
        && parse_args("read_char", args, nargs, kwnames, eof_names, 2, 0, a) < 0)
        return NULL;
    if (nargs <= 2 && kwnames == NULL) {
        if (nargs > 0)
            a[0] = args[0];
        if (nargs > 1)
            a[1] = args[1];
    }
    if (self->codec != NULL) {
        /* The text buffer: maybe_take_char, else the slow path. */
        PyObject *c;
        if (settle_if_batch(self) < 0)
            return NULL;
        c = text_take_char_fast(self);
        if (c != NULL || PyErr_Occurred())
            return c;
        c = call_py(self, str_py_maybe_take_char, NULL);
        if (c == NULL || c != Py_None)
            return c;
        Py_DECREF(c);
    }
    else if (self->batch == Py_None && (b = valid_bytes(self)) != NULL) {
        Py_ssize_t pos = self->pos;
        if (pos < self->end) {
            PyObject *c = PyUnicode_FromOrdinal((unsigned char)b[pos]);
            if (c == NULL)
                return NULL;
            SET_POS(self, pos + 1);
            self->run = 0;
            return c;
        }
    }
    stack[0] = a[0] ? a[0] : Py_True;
    stack[1] = a[1] ? a[1] : Py_None;
    return call_slow(self->slow_char, stack, 2);
}

static PyObject *
Buf_read_byte(Buf *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *a[2] = {NULL, NULL};
    PyObject *stack[2];
    const char *b;
    if ((nargs > 2 || kwnames != NULL)
        && parse_args("read_byte", args, nargs, kwnames, eof_names, 2, 0, a) < 0)
        return NULL;
    if (nargs <= 2 && kwnames == NULL) {
        if (nargs > 0)
            a[0] = args[0];
        if (nargs > 1)
            a[1] = args[1];
    }
    if (self->batch == Py_None && (b = valid_bytes(self)) != NULL) {
        Py_ssize_t pos = self->pos;
        PyObject *table = self->table;
        if (pos < self->end && table != NULL) {
            unsigned char byte = (unsigned char)b[pos];
            if (PyTuple_CheckExact(table) && byte < PyTuple_GET_SIZE(table)) {
                PyObject *r = PyTuple_GET_ITEM(table, byte);
                Py_INCREF(r);
                SET_POS(self, pos + 1);
                self->run = 0;
                return r;
            }
            else {
                /* As the Python code: commit, then index the table (which may raise). */
                PyObject *key = PyLong_FromLong(byte);
                PyObject *r;
                if (key == NULL)
                    return NULL;
                SET_POS(self, pos + 1);
                self->run = 0;
                Py_INCREF(table);
                r = PyObject_GetItem(table, key);
                Py_DECREF(table);
                Py_DECREF(key);
                return r;
            }
        }
    }
    stack[0] = a[0] ? a[0] : Py_True;
    stack[1] = a[1] ? a[1] : Py_None;
    return call_slow(self->slow_byte, stack, 2);
}

static const char *const final_names[] = {"final"};

static PyObject *
Buf_maybe_take_char(Buf *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *a[1] = {NULL};
    const char *b;
    if (parse_args("maybe_take_char", args, nargs, kwnames, final_names, 1, 0, a) < 0)
        return NULL;
    if (settle_if_batch(self) < 0)
        return NULL;
    if (self->codec != NULL) {
        PyObject *c = text_take_char_fast(self);
        if (c != NULL || PyErr_Occurred())
            return c;
        return call_py(self, str_py_maybe_take_char, a[0]);
    }
    if (self->batch == Py_None && (b = valid_bytes(self)) != NULL) {
        Py_ssize_t pos = self->pos;
        if (pos < self->end) {
            PyObject *c = PyUnicode_FromOrdinal((unsigned char)b[pos]);
            if (c == NULL)
                return NULL;
            SET_POS(self, pos + 1);
            self->run = 0;
            return c;
        }
        Py_RETURN_NONE;
    }
    if (self->batch != Py_None)
        Py_RETURN_NONE;
    PyErr_SetString(PyExc_SystemError, "sockstream input buffer: inconsistent state");
    return NULL;
}

static PyObject *
Buf_peek_char(Buf *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *a[1] = {NULL};
    const char *b;
    if (parse_args("peek_char", args, nargs, kwnames, final_names, 1, 0, a) < 0)
        return NULL;
    if (settle_if_batch(self) < 0)
        return NULL;
    if (self->codec != NULL) {
        PyObject *c = text_peek_char_fast(self);
        if (c != NULL || PyErr_Occurred())
            return c;
        return call_py(self, str_py_peek_char, a[0]);
    }
    b = valid_bytes(self);
    if (b == NULL) {
        PyErr_SetString(PyExc_SystemError, "sockstream input buffer: inconsistent state");
        return NULL;
    }
    if (self->pos < self->end)
        return PyUnicode_FromOrdinal((unsigned char)b[self->pos]);
    Py_RETURN_NONE;
}

static PyObject *
Buf_has_char(Buf *self, PyObject *Py_UNUSED(ignored))
{
    if (settle_if_batch(self) < 0)
        return NULL;
    if (self->codec != NULL) {
        PyObject *c = text_peek_char_fast(self);
        if (c != NULL) {
            Py_DECREF(c);
            Py_RETURN_TRUE;
        }
        if (PyErr_Occurred())
            return NULL;
        return call_py(self, str_py_has_char, NULL);
    }
    return PyBool_FromLong(self->pos < self->end);
}

static PyObject *
Buf_maybe_take_byte(Buf *self, PyObject *table)
{
    const char *b;
    if (settle_if_batch(self) < 0)
        return NULL;
    if (self->batch == Py_None && (b = valid_bytes(self)) != NULL) {
        Py_ssize_t pos = self->pos;
        if (pos < self->end) {
            unsigned char byte = (unsigned char)b[pos];
            PyObject *key, *r;
            if (PyTuple_CheckExact(table) && byte < PyTuple_GET_SIZE(table)) {
                r = PyTuple_GET_ITEM(table, byte);
                Py_INCREF(r);
                SET_POS(self, pos + 1);
                self->run = 0;
                return r;
            }
            key = PyLong_FromLong(byte);
            if (key == NULL)
                return NULL;
            SET_POS(self, pos + 1);
            self->run = 0;
            r = PyObject_GetItem(table, key);
            Py_DECREF(key);
            return r;
        }
        Py_RETURN_NONE;
    }
    if (self->batch != Py_None)
        Py_RETURN_NONE;
    PyErr_SetString(PyExc_SystemError, "sockstream input buffer: inconsistent state");
    return NULL;
}

/* ``(s, False)``, stealing ``s`` (NULL in, NULL out).  The tuple made last time is reused if
 * only this buffer holds it (the caller unpacked and dropped it): nobody can see it change. */
static PyObject *
pair_false(Buf *self, PyObject *s)
{
    PyObject *t;
    if (s == NULL)
        return NULL;
    t = self->pair;
    if (t != NULL && Py_REFCNT(t) == 1 && PyTuple_GET_ITEM(t, 1) == Py_False) {
        PyObject *old = PyTuple_GET_ITEM(t, 0);
        Py_INCREF(t);
        PyTuple_SET_ITEM(t, 0, s);
        Py_DECREF(old); /* (a str or bytes: no finalizer runs) */
        /* The collector may have untracked it (it held atoms); a str or bytes keeps it so. */
        if (!PyUnicode_CheckExact(s) && !PyBytes_CheckExact(s) && !PyObject_GC_IsTracked(t))
            PyObject_GC_Track(t);
        return t;
    }
    t = PyTuple_New(2);
    if (t == NULL) {
        Py_DECREF(s);
        return NULL;
    }
    PyTuple_SET_ITEM(t, 0, s);
    Py_INCREF(Py_False);
    PyTuple_SET_ITEM(t, 1, Py_False);
    Py_INCREF(t);
    Py_XSETREF(self->pair, t);
    return t;
}

/* ---- lines ----------------------------------------------------------------------------- */

/* The refill a reading verb does itself when no whole line is buffered (issue 16): one call of
 * the stream's ``_fill`` (a Python frame: the lock, the timeouts, the receive and the commit
 * with no Python code between them are there), instead of the slow path's chain of frames.
 * Only in the simple case: a plain buffer (no codec), no batch, an int or no line limit that
 * the buffered bytes do not pass, and no newline in them; the search resumes past them next
 * time (as ``_take_line`` records).  The count ``_fill`` added (> 0: look again), 0 at
 * end-of-file or timeout (``*stream`` is then a new reference to the stream, for the end),
 * -1 with an exception set, or -2: not the simple case (nothing done; take the slow path);
 * ``read_line`` and ``readline`` (``take_line_refilling``). */
static Py_ssize_t
refill(Buf *self, PyObject **stream)
{
    const char *b;
    PyObject *r;
    Py_ssize_t start, n;
    *stream = NULL;
    if (self->fill == Py_None || self->line_end == Py_None || !PyWeakref_CheckRef(self->owner)
        || self->codec != NULL || self->batch != Py_None || self->mll_state == MLL_OTHER)
        return -2;
    b = valid_bytes(self);
    if (b == NULL)
        return -2;
    start = self->scan > self->pos ? self->scan : self->pos;
    if (start < self->end && memchr(b + start, '\n', (size_t)(self->end - start)) != NULL)
        return -2;
    if (self->mll_state == MLL_INT && self->end - self->pos > self->mll)
        return -2; /* (the slow path raises LineTooLongError) */
    self->scan = self->end;
#if PY_VERSION_HEX >= 0x030D0000
    if (PyWeakref_GetRef(self->owner, &r) < 0)
        return -1;
    if (r == NULL)
        return -2; /* the stream is gone: the slow path says so */
#else
    r = PyWeakref_GetObject(self->owner); /* (borrowed) */
    if (r == NULL)
        return -1;
    if (r == Py_None)
        return -2; /* the stream is gone: the slow path says so */
    Py_INCREF(r);
#endif
    *stream = r;
    r = PyObject_CallOneArg(self->fill, *stream);
    if (r == NULL) {
        Py_CLEAR(*stream);
        return -1;
    }
    n = PyLong_AsSsize_t(r);
    Py_DECREF(r);
    if (n < 0) {
        Py_CLEAR(*stream);
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_RuntimeError, "_fill returned a negative count");
        return -1;
    }
    if (n > 0)
        Py_CLEAR(*stream);
    return n;
}

/* True if a byte of p[0:n] is >= 0x80: eight bytes a step, never outside p[0:n]. */
static inline int
any_high(const unsigned char *p, Py_ssize_t n)
{
    uint64_t acc = 0, w;
    Py_ssize_t i = 0;
    if (n < 8) {
        unsigned char c = 0;
        for (; i < n; i++)
            c |= p[i];
        return c >= 0x80;
    }
    for (; i + 8 <= n; i += 8) {
        memcpy(&w, p + i, 8);
        acc |= w;
    }
    memcpy(&w, p + n - 8, 8); /* the tail: the last eight bytes (some seen twice) */
    acc |= w;
    return (acc & UINT64_C(0x8080808080808080)) != 0;
}

/* p[0:n] as a str, as PyUnicode_DecodeLatin1 makes it (ASCII when every byte is below 0x80;
 * the shared empty and one-character strings), built at once: no second look at the bytes
 * for their largest character, no call chain. */
/* The first whole line of ``b[pos:end]``, searched from ``start``: where its data ends
 * (``*dend``: before the terminator, and in lenient mode before a CR ending it) and where the
 * line ends (``*lend``, after the terminator).  0 if none is whole. */
static inline int
find_line_end(const char *b, Py_ssize_t pos, Py_ssize_t start, Py_ssize_t end, int nl,
              Py_ssize_t *dend, Py_ssize_t *lend)
{
    if (nl == NL_CRLF) {
        Py_ssize_t i = find_crlf(b, start, end);
        if (i < 0)
            return 0;
        *dend = i;
        *lend = i + 2;
        return 1;
    }
    const char *p = memchr(b + start, '\n', (size_t)(end - start));
    if (p == NULL)
        return 0;
    *lend = p - b + 1;
    *dend = (nl == NL_LENIENT && p - b > pos && p[-1] == '\r') ? p - b - 1 : p - b;
    return 1;
}

static inline PyObject *
latin1_str(const char *p, Py_ssize_t n)
{
    PyObject *s;
    if (n < 2)
        return PyUnicode_DecodeLatin1(p, n, NULL);
    s = PyUnicode_New(n, any_high((const unsigned char *)p, n) ? 0xff : 0x7f);
    if (s != NULL)
        memcpy(PyUnicode_1BYTE_DATA(s), p, (size_t)n);
    return s;
}

/* A whole line from what is buffered, in ``kind``'s form, committed; NULL with no error set if
 * there is none (or the limit says no): the caller then takes the Python path.  The plain
 * buffer and the text buffer's Latin-1 and ASCII lines are served here in one pass (the search,
 * the str made straight from the bytes, the commit); the others by ``text_take_line_fast``. */
static PyObject *
take_line_fast(Buf *self, Py_ssize_t kind)
{
    int nl = NL_LF, ascii = 0;
    if (self->codec != NULL) {
        if (self->codec_kind == K_ASCII && kind != BYTES_LINE_NL)
            ascii = 1;
        else if (self->codec_kind != K_LATIN1 && kind != BYTES_LINE_NL)
            return text_take_line_fast(self, kind);
        nl = self->nl_mode;
        if (nl < 0 || self->codec_kind < 0)
            return text_take_line_fast(self, kind);
    }
    for (;;) {
        const char *b;
        PyObject *buf, *line;
        Py_ssize_t pos, epoch, end, start, dend, lend;
        if (self->batch != Py_None || self->mll_state == MLL_OTHER)
            return NULL;
        b = valid_bytes(self);
        if (b == NULL)
            return NULL;
        buf = self->buf;
        pos = self->pos;
        epoch = self->epoch;
        end = self->end;
        start = self->scan > pos ? self->scan : pos;
        if (start >= end)
            return NULL;
        if (!find_line_end(b, pos, start, end, nl, &dend, &lend))
            return NULL;
        if (self->mll_state == MLL_INT && dend - pos > self->mll)
            return NULL;
        if (ascii && kind != BYTES_LINE_NL
            && any_high((const unsigned char *)b + pos, (kind == STR_LINE ? dend : lend) - pos))
            return text_take_line_fast(self, kind); /* (its codec call decides) */
        Py_INCREF(buf);
        if (kind == BYTES_LINE_NL)
            line = PyBytes_FromStringAndSize(b + pos, lend - pos);
        else if (kind == STR_LINE)
            line = pair_false(self, latin1_str(b + pos, dend - pos));
        else
            line = latin1_str(b + pos, lend - pos);
        if (line == NULL) {
            Py_DECREF(buf);
            return NULL;
        }
        if (UNCHANGED(self, pos, epoch, buf)) {
            Py_DECREF(buf);
            SET_POS(self, lend);
            self->run += 1;
            return line;
        }
        /* Another thread (or a finalizer) moved the state: drop it, look again. */
        Py_DECREF(buf);
        Py_DECREF(line);
    }
}

/* The common case of the line verbs, inlined into each: a whole line buffered in a plain
 * buffer, or in a Latin-1 text buffer (LF, CRLF or lenient lines), no batch, an int or no limit
 * that the line keeps to, and for ``STR_LINE`` a ``(line, False)`` pair to reuse (see
 * ``pair_false``).  The line in ``kind``'s form, committed; NULL with no error set when it is
 * not that case (then ``take_line_fast`` and the slower paths decide, from the same state).
 *
 * Between reading the state and committing, nothing here runs Python code, releases the GIL or
 * frees anything but a str or bytes: memchr, one new str or bytes (not a GC object: no
 * collection starts), the reused pair's old line.  So no other thread or finalizer can move
 * the state, and the commit needs no compare, unlike ``take_line_fast``'s, whose decoders,
 * error handlers and new tuples may run Python code. */
static SS_HOT PyObject *
line_hit_nl(Buf *self, Py_ssize_t kind, int nl)
{
    PyObject *buf = self->buf, *line, *t = NULL, *old = NULL;
    Py_ssize_t pos = self->pos, end = self->end, start, i, dend;
    const char *b, *p;
    if (self->batch != Py_None || self->mll_state == MLL_OTHER)
        return NULL;
    if (kind == STR_LINE) {
        t = self->pair;
        if (t == NULL || Py_REFCNT(t) != 1 || PyTuple_GET_ITEM(t, 1) != Py_False)
            return NULL;
        old = PyTuple_GET_ITEM(t, 0);
        if (!PyUnicode_CheckExact(old) && !PyBytes_CheckExact(old))
            return NULL;
    }
    if (buf == NULL || !PyByteArray_CheckExact(buf)
        || (size_t)end > (size_t)PyByteArray_GET_SIZE(buf) || (size_t)pos > (size_t)end)
        return NULL;
    b = ((PyByteArrayObject *)buf)->ob_start; /* (end > 0 below: not the empty one) */
    start = self->scan > pos ? self->scan : pos;
    if (nl == NL_CRLF)
        start += 1; /* (as find_crlf: an LF with its CR in the range) */
    if (start >= end)
        return NULL;
    p = memchr(b + start, '\n', (size_t)(end - start));
    if (p == NULL)
        return NULL;
    i = p - b;
    dend = i;
    if (nl != NL_LF && i > pos && b[i - 1] == '\r')
        dend = i - 1;
    else if (nl == NL_CRLF)
        return NULL; /* a lone LF first: find_crlf looks further */
    if (self->mll_state == MLL_INT && dend - pos > self->mll)
        return NULL;
    if (kind == BYTES_LINE_NL)
        line = PyBytes_FromStringAndSize(b + pos, i + 1 - pos);
    else if (kind == STR_LINE) {
        PyObject *s = latin1_str(b + pos, dend - pos);
        if (s == NULL)
            return NULL;
        /* pair_false's reuse (a str keeps the tuple atomic, tracked by the collector or not) */
        Py_INCREF(t);
        PyTuple_SET_ITEM(t, 0, s);
        Py_DECREF(old);
        line = t;
    }
    else
        line = latin1_str(b + pos, i + 1 - pos);
    if (line == NULL)
        return NULL;
    SET_POS(self, i + 1);
    self->run += 1;
    return line;
}

static SS_HOT PyObject *
line_hit(Buf *self, Py_ssize_t kind)
{
    if (self->codec == NULL)
        return line_hit_nl(self, kind, NL_LF);
    if (self->codec_kind != K_LATIN1 || self->nl_mode < 0)
        return NULL;
    return line_hit_nl(self, kind, self->nl_mode);
}

/* ---- filling ---------------------------------------------------------------------------- */

/* As _buffer's MIN_FREE and _SMALL_REST (a test checks they agree). */
#define MIN_FREE 8192
#define SMALL_REST 4096
static PyObject *str_py_writable;

/* ``writable(want=MIN_FREE)``: a view of the free tail when it already has the room (and the
 * rest is not better moved to the front), no batch; every other case the pure method
 * (``_py_writable``: compaction, growth). */
static PyObject *
Buf_writable(Buf *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    Py_ssize_t want = MIN_FREE, free;
    if (nargs == 1 && kwnames == NULL && PyLong_CheckExact(args[0])) {
        want = PyLong_AsSsize_t(args[0]);
        if (want == -1 && PyErr_Occurred())
            PyErr_Clear();
    }
    else if (nargs != 0 || kwnames != NULL)
        want = -1;
    if (want >= 0 && self->batch == Py_None && valid_bytes(self) != NULL) {
        PyObject *whole, *view;
        free = PyByteArray_GET_SIZE(self->buf) - self->end;
        if (free >= want && (self->end - self->pos > SMALL_REST || free > self->pos)) {
            whole = PyMemoryView_FromObject(self->buf);
            if (whole == NULL)
                return NULL;
            view = PySequence_GetSlice(whole, self->end, PY_SSIZE_T_MAX);
            Py_DECREF(whole);
            return view;
        }
    }
    return defer(self, str_py_writable, args, nargs, kwnames);
}

/* ``commit(n)``: account for ``n`` bytes written into the view ``writable`` returned. */
static PyObject *
Buf_commit(Buf *self, PyObject *arg)
{
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    self->end += n;
    Py_RETURN_NONE;
}

/* A whole line in ``kind``'s form, refilling (``refill``) while none is buffered in the simple
 * case; at end-of-file or timeout the stream's ``_line_end(kind, eof_error, eof_value)``
 * answers.  NULL with no error set: not the simple case (the caller takes the slow path). */
static PyObject *
take_line_refilling(Buf *self, Py_ssize_t kind, PyObject *eof_error, PyObject *eof_value)
{
    for (;;) {
        PyObject *stream, *line, *end[4];
        Py_ssize_t n;
        line = take_line_fast(self, kind);
        if (line != NULL || PyErr_Occurred())
            return line;
        n = refill(self, &stream);
        if (n < 0)
            return NULL; /* -1: an error is set; -2: none, the slow path */
        if (n == 0) {
            end[0] = stream;
            end[1] = PyLong_FromSsize_t(kind);
            if (end[1] == NULL) {
                Py_DECREF(stream);
                return NULL;
            }
            end[2] = eof_error;
            end[3] = eof_value;
            line = PyObject_Vectorcall(self->line_end, end, 4, NULL);
            Py_DECREF(end[1]);
            Py_DECREF(stream);
            return line;
        }
    }
}

static const char *const readline_names[] = {"size"};

static SS_COLD PyObject *
readline_rest(Buf *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *a[1] = {NULL};
    PyObject *size, *line, *kindobj, *r;
    if (nargs == 0 && kwnames == NULL)
        size = int_minus_one;
    else if (nargs == 1 && kwnames == NULL)
        size = args[0];
    else {
        if (parse_args("readline", args, nargs, kwnames, readline_names, 1, 0, a) < 0)
            return NULL;
        size = a[0] ? a[0] : int_minus_one;
    }
    if (size != int_minus_one)
        return call_slow(self->slow_line, &size, 1);
    if (self->batch != Py_None)
        return defer(self, str_py_readline, args, nargs, kwnames);
    line = take_line_refilling(self, self->kind, Py_True, Py_None);
    if (line != NULL || PyErr_Occurred())
        return line;
    kindobj = PyLong_FromSsize_t(self->kind);
    if (kindobj == NULL)
        return NULL;
    line = call_method(self, str_maybe_take_line, &kindobj, 1);
    Py_DECREF(kindobj);
    if (line == NULL || line != Py_None)
        return line;
    Py_DECREF(line);
    r = call_slow(self->slow_line, &int_minus_one, 1);
    return r;
}

static SS_COLD PyObject *
read_line_rest(Buf *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *a[2] = {NULL, NULL};
    PyObject *line, *kindobj, *stack[2];
    if (self->batch != Py_None)
        return defer(self, str_py_read_line, args, nargs, kwnames);
    if (nargs <= 2 && kwnames == NULL) {
        if (nargs > 0)
            a[0] = args[0];
        if (nargs > 1)
            a[1] = args[1];
    }
    else if (parse_args("read_line", args, nargs, kwnames, eof_names, 2, 0, a) < 0)
        return NULL;
    line = take_line_refilling(self, STR_LINE, a[0] ? a[0] : Py_True, a[1] ? a[1] : Py_None);
    if (line != NULL || PyErr_Occurred())
        return line;
    kindobj = PyLong_FromLong(STR_LINE);
    if (kindobj == NULL)
        return NULL;
    line = call_method(self, str_maybe_take_line, &kindobj, 1);
    Py_DECREF(kindobj);
    if (line == NULL || line != Py_None)
        return line;
    Py_DECREF(line);
    stack[0] = a[0] ? a[0] : Py_True;
    stack[1] = a[1] ? a[1] : Py_None;
    return call_slow(self->slow_read_line, stack, 2);
}

/* ``readline()`` and ``read_line(...)``: the common case (``line_hit``) in a small frame, the
 * rest (arguments, refills, the Python paths) out of line. */
static PyObject *
Buf_readline(Buf *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs == 0 && kwnames == NULL) {
        PyObject *line = line_hit(self, self->kind);
        if (line != NULL || PyErr_Occurred())
            return line;
    }
    return readline_rest(self, args, nargs, kwnames);
}

static PyObject *
Buf_read_line(Buf *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs <= 2 && kwnames == NULL) { /* (the arguments are for the end of the stream) */
        PyObject *line = line_hit(self, STR_LINE);
        if (line != NULL || PyErr_Occurred())
            return line;
    }
    return read_line_rest(self, args, nargs, kwnames);
}

static const char *const mtl_names[] = {"kind", "limit"};

static PyObject *
Buf_maybe_take_line(Buf *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *a[2] = {NULL, NULL};
    PyObject *stack[2];
    if (nargs >= 1 && nargs <= 2 && kwnames == NULL) {
        a[0] = args[0];
        a[1] = nargs == 2 ? args[1] : NULL;
    }
    else if (parse_args("maybe_take_line", args, nargs, kwnames, mtl_names, 2, 1, a) < 0)
        return NULL;
    if (PyLong_CheckExact(a[0]) && (a[1] == NULL || a[1] == int_minus_one)) {
        int overflow;
        long kind = PyLong_AsLongAndOverflow(a[0], &overflow);
        if (!overflow && kind >= STR_LINE && kind <= BYTES_LINE_NL) {
            PyObject *line = take_line_fast(self, kind);
            if (line != NULL || PyErr_Occurred())
                return line;
        }
    }
    /* Every other case: the Python path (which also validates). */
    stack[0] = a[0];
    stack[1] = a[1] ? a[1] : int_minus_one;
    return call_method(self, self->codec != NULL ? str_py_maybe_take_line : str_take_line, stack,
                       2);
}

/* ---- read_until ------------------------------------------------------------------------ */

static Py_ssize_t
find_bytes(const char *hay, Py_ssize_t start, Py_ssize_t end, const char *needle, Py_ssize_t n)
{
    if (n <= 0 || end - start < n)
        return -1;
#if defined(__GLIBC__) || defined(__APPLE__) || defined(__FreeBSD__)
    {
        /* The C library's two-way search (as bytes.find's, no false starts on each CR). */
        const char *p = memmem(hay + start, (size_t)(end - start), needle, (size_t)n);
        return p == NULL ? -1 : p - hay;
    }
#else
    {
        Py_ssize_t i = start;
        while (end - i >= n) {
            const char *p = memchr(hay + i, needle[0], (size_t)(end - i - n + 1));
            if (p == NULL)
                return -1;
            i = p - hay;
            if (memcmp(p, needle, (size_t)n) == 0)
                return i;
            i++;
        }
        return -1;
    }
#endif
}

/* The first CRLF in b[start:end] (the index of its CR), or -1: the LFs by memchr, each checked
 * for the CR before it (no two-byte search set-up per line). */
static Py_ssize_t
find_crlf(const char *b, Py_ssize_t start, Py_ssize_t end)
{
    Py_ssize_t i = start + 1;
    while (i < end) {
        const char *p = memchr(b + i, '\n', (size_t)(end - i));
        Py_ssize_t k;
        if (p == NULL)
            return -1;
        k = p - b;
        if (b[k - 1] == '\r')
            return k - 1;
        i = k + 1;
    }
    return -1;
}

/* ---- the text buffer ------------------------------------------------------------------ */

/* buf[pos:pos+n] decoded exactly as Codec.decode does (str(data, canonical, errors)).  The
 * bytearray is pinned (a buffer export) and the codec's names held while a codec or an error
 * handler written in Python may run, so no memory used here can move or go away. */
static PyObject *
text_decode(Buf *self, PyObject *buf, Py_ssize_t pos, Py_ssize_t n)
{
    Py_buffer view;
    PyObject *canonical, *errors, *r = NULL;
    int kind = self->codec_kind;
    if (kind == K_LATIN1)
        return PyUnicode_DecodeLatin1(PyByteArray_AS_STRING(buf) + pos, n, NULL);
    canonical = self->canonical;
    errors = self->errors;
    if (canonical == NULL || errors == NULL) {
        PyErr_SetString(PyExc_SystemError, "sockstream input buffer: no codec");
        return NULL;
    }
    if (PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    Py_INCREF(canonical);
    Py_INCREF(errors);
    if (pos < 0 || n < 0 || pos + n > view.len)
        PyErr_SetString(PyExc_SystemError, "sockstream input buffer: inconsistent state");
    else {
        const char *p = (const char *)view.buf + pos;
        const char *e = PyUnicode_AsUTF8(errors);
        if (e == NULL)
            ;
        else if (kind == K_UTF8)
            r = PyUnicode_DecodeUTF8(p, n, e);
        else if (kind == K_ASCII)
            r = PyUnicode_DecodeASCII(p, n, e);
        else {
            const char *c = PyUnicode_AsUTF8(canonical);
            if (c != NULL)
                r = PyUnicode_Decode(p, n, c, e);
        }
    }
    PyBuffer_Release(&view);
    Py_DECREF(canonical);
    Py_DECREF(errors);
    return r;
}

/* The whole, valid character at b[pos:end] for Latin-1, ASCII and UTF-8 (the strict table of
 * well-formed UTF-8: no overlongs, no surrogates, nothing past U+10FFFF), and its size; NULL
 * with no error set otherwise (incomplete, invalid, another codec): the Python path decides. */
static PyObject *
text_char_at(Buf *self, const unsigned char *b, Py_ssize_t pos, Py_ssize_t end, Py_ssize_t *size)
{
    unsigned char c0 = b[pos], c1, c2, c3;
    int kind = self->codec_kind;
    if (kind == K_LATIN1 || (c0 < 0x80 && (kind == K_ASCII || kind == K_UTF8))) {
        *size = 1;
        return PyUnicode_FromOrdinal(c0);
    }
    if (kind != K_UTF8)
        return NULL;
    if (c0 >= 0xC2 && c0 <= 0xDF) {
        if (end - pos < 2)
            return NULL;
        c1 = b[pos + 1];
        if (c1 < 0x80 || c1 > 0xBF)
            return NULL;
        *size = 2;
        return PyUnicode_FromOrdinal(((c0 & 0x1F) << 6) | (c1 & 0x3F));
    }
    if (c0 >= 0xE0 && c0 <= 0xEF) {
        unsigned char lo = c0 == 0xE0 ? 0xA0 : 0x80, hi = c0 == 0xED ? 0x9F : 0xBF;
        if (end - pos < 3)
            return NULL;
        c1 = b[pos + 1];
        c2 = b[pos + 2];
        if (c1 < lo || c1 > hi || c2 < 0x80 || c2 > 0xBF)
            return NULL;
        *size = 3;
        return PyUnicode_FromOrdinal(((c0 & 0x0F) << 12) | ((c1 & 0x3F) << 6) | (c2 & 0x3F));
    }
    if (c0 >= 0xF0 && c0 <= 0xF4) {
        unsigned char lo = c0 == 0xF0 ? 0x90 : 0x80, hi = c0 == 0xF4 ? 0x8F : 0xBF;
        if (end - pos < 4)
            return NULL;
        c1 = b[pos + 1];
        c2 = b[pos + 2];
        c3 = b[pos + 3];
        if (c1 < lo || c1 > hi || c2 < 0x80 || c2 > 0xBF || c3 < 0x80 || c3 > 0xBF)
            return NULL;
        *size = 4;
        return PyUnicode_FromOrdinal(((c0 & 0x07) << 18) | ((c1 & 0x3F) << 12)
                                     | ((c2 & 0x3F) << 6) | (c3 & 0x3F));
    }
    return NULL;
}

/* Take the next character (text buffer), recording it for unread_char (``_last``), committed;
 * NULL with no error set if the Python path must decide. */
static PyObject *
text_take_char_fast(Buf *self)
{
    for (;;) {
        const char *b;
        PyObject *buf, *c, *last;
        Py_ssize_t pos, epoch, size = 0;
        if (self->batch != Py_None || self->codec_kind < 0)
            return NULL;
        b = valid_bytes(self);
        if (b == NULL || self->pos >= self->end)
            return NULL;
        buf = self->buf;
        pos = self->pos;
        epoch = self->epoch;
        c = text_char_at(self, (const unsigned char *)b, pos, self->end, &size);
        if (c == NULL)
            return NULL;
        Py_INCREF(buf);
        last = Py_BuildValue("(nnnO)", pos + size, epoch, size, c);
        if (last == NULL) {
            Py_DECREF(buf);
            Py_DECREF(c);
            return NULL;
        }
        if (UNCHANGED(self, pos, epoch, buf)) {
            Py_DECREF(buf);
            SET_POS(self, pos + size);
            self->run = 0;
            Py_XSETREF(self->last, last);
            return c;
        }
        Py_DECREF(buf);
        Py_DECREF(c);
        Py_DECREF(last);
    }
}

/* The next character, not consumed (text buffer); NULL with no error: the Python path. */
static PyObject *
text_peek_char_fast(Buf *self)
{
    const char *b;
    Py_ssize_t size;
    if (self->batch != Py_None || self->codec_kind < 0)
        return NULL;
    b = valid_bytes(self);
    if (b == NULL || self->pos >= self->end)
        return NULL;
    return text_char_at(self, (const unsigned char *)b, self->pos, self->end, &size);
}

/* ---- the text window -------------------------------------------------------------------- */

/* Decode the whole lines of buf[pos:pos + WINDOW_BYTES] once (strict: all of it decodes, or no
 * window: a valid UTF-8 text cut at its newlines decodes piece by piece to the same strings).
 * 1: a window is there; 0: none (no whole line in reach, a decoding error); -1: error. */
static int
window_cut(Buf *self, const char *b)
{
    Py_ssize_t pos = self->pos, stop, last = -1, i, epoch;
    PyObject *text, *buf;
    Py_buffer view;
    int changed;
    stop = self->end - pos > WINDOW_BYTES ? pos + WINDOW_BYTES : self->end;
    /* The last terminator in reach (a CRLF's LF for CRLF lines). */
    for (i = stop - 1; i >= pos; i--) {
        if (b[i] == '\n' && (self->nl_mode != NL_CRLF || (i > pos && b[i - 1] == '\r'))) {
            last = i;
            break;
        }
    }
    if (last < 0)
        return 0;
    buf = self->buf;
    epoch = self->epoch;
    /* Pinned while decoding (an error handler is called on a bad byte). */
    if (PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE) < 0)
        return -1;
    Py_INCREF(buf);
    if (self->codec_kind == K_LATIN1)
        text = PyUnicode_DecodeLatin1((const char *)view.buf + pos, last + 1 - pos, NULL);
    else if (self->codec_kind == K_ASCII)
        text = PyUnicode_DecodeASCII((const char *)view.buf + pos, last + 1 - pos, "strict");
    else
        text = PyUnicode_DecodeUTF8((const char *)view.buf + pos, last + 1 - pos, "strict");
    PyBuffer_Release(&view);
    changed = self->pos != pos || self->buf != buf || self->epoch != epoch;
    Py_DECREF(buf);
    if (text == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
            return -1;
        PyErr_Clear(); /* the lines one by one: the bad one raises as the pure path does */
        return 0;
    }
    if (changed) { /* an error handler ran and the state moved: no window */
        Py_DECREF(text);
        return 0;
    }
    Py_XSETREF(self->wtext, text);
    Py_INCREF(self->buf);
    Py_XSETREF(self->wbuf, self->buf);
    self->wepoch = self->epoch;
    self->wbyte = pos;
    self->wend = last + 1;
    self->wchar = 0;
    self->wvalid = 1;
    return 1;
}

/* The next line from the window (STR_LINE or STR_LINE_NL), committed; NULL with no error set
 * if the window cannot serve it (then the line-by-line path does). */
static PyObject *
window_line(Buf *self, Py_ssize_t kind)
{
    const char *b;
    PyObject *buf, *line, *s;
    Py_ssize_t pos, epoch, i, j, dend, lend, dj, lj;
    /* (Latin-1 and ASCII decode a line as fast as they copy it: no window for them.) */
    if (self->batch != Py_None || !self->strict || self->nl_mode < 0
        || self->codec_kind != K_UTF8)
        return NULL;
    b = valid_bytes(self);
    if (b == NULL)
        return NULL;
    pos = self->pos;
    if (!(self->wvalid && self->wbuf == self->buf && self->wepoch == self->epoch
          && self->wbyte == pos && pos < self->wend && self->wend <= self->end)) {
        int r;
        self->wvalid = 0;
        if (self->run < 2)
            return NULL; /* a window after a few lines in a row only */
        r = window_cut(self, b);
        if (r <= 0)
            return NULL;
    }
    buf = self->buf;
    epoch = self->epoch;
    /* The line's end, in the bytes and in the text (the same terminator: one byte or two
     * bytes are one or two characters). */
    if (self->nl_mode == NL_CRLF) {
        Py_ssize_t from = self->wchar + 1;
        i = find_crlf(b, pos, self->wend);
        for (;;) { /* the LF of a CRLF in the text too */
            j = PyUnicode_FindChar(self->wtext, '\n', from, PY_SSIZE_T_MAX, 1);
            if (j < 0 || PyUnicode_READ_CHAR(self->wtext, j - 1) == '\r')
                break;
            from = j + 1;
        }
        if (j >= 0)
            j -= 1; /* the CR */
        if (i < 0 || j < 0) {
            if (j == -2)
                return NULL;
            self->wvalid = 0;
            return NULL;
        }
        dend = i;
        lend = i + 2;
        dj = j;
        lj = j + 2;
    }
    else {
        const char *p = memchr(b + pos, '\n', (size_t)(self->wend - pos));
        j = PyUnicode_FindChar(self->wtext, '\n', self->wchar, PY_SSIZE_T_MAX, 1);
        if (p == NULL || j < 0) {
            if (j == -2)
                return NULL;
            self->wvalid = 0;
            return NULL;
        }
        i = p - b;
        dend = i;
        lend = i + 1;
        dj = j;
        lj = j + 1;
        if (self->nl_mode == NL_LENIENT && i > pos && b[i - 1] == '\r') {
            dend = i - 1;
            dj = j - 1;
        }
    }
    if (self->mll_state == MLL_INT && dend - pos > self->mll)
        return NULL; /* the line-by-line path (and the pure one) judges it */
    Py_INCREF(buf);
    if (kind == STR_LINE) {
        s = PyUnicode_Substring(self->wtext, self->wchar, dj);
        line = pair_false(self, s);
    }
    else
        line = PyUnicode_Substring(self->wtext, self->wchar, lj);
    if (line == NULL) {
        Py_DECREF(buf);
        return NULL;
    }
    if (UNCHANGED(self, pos, epoch, buf) && self->wvalid && self->wbyte == pos) {
        Py_DECREF(buf);
        self->pos = lend; /* (the window's own commit: it stays valid) */
        self->run += 1;
        self->wbyte = lend;
        self->wchar = lj;
        return line;
    }
    Py_DECREF(buf);
    Py_DECREF(line);
    return NULL;
}

/* A whole line (text buffer: its terminator, its codec) in ``kind``'s form, committed; NULL
 * with no error set if there is none or the Python path must decide (a decoding error is
 * raised, with nothing consumed, as the Python path raises it). */
static PyObject *
text_take_line_fast(Buf *self, Py_ssize_t kind)
{
    if (kind != BYTES_LINE_NL) {
        PyObject *line = window_line(self, kind);
        if (line != NULL || PyErr_Occurred())
            return line;
    }
    for (;;) {
        const char *b;
        PyObject *buf, *line;
        Py_ssize_t pos, epoch, end, start, dend, lend;
        if (self->batch != Py_None || self->mll_state == MLL_OTHER || self->codec_kind < 0
            || self->nl_mode < 0)
            return NULL;
        b = valid_bytes(self);
        if (b == NULL)
            return NULL;
        buf = self->buf;
        pos = self->pos;
        epoch = self->epoch;
        end = self->end;
        start = self->scan > pos ? self->scan : pos;
        if (start >= end)
            return NULL;
        if (!find_line_end(b, pos, start, end, self->nl_mode, &dend, &lend))
            return NULL;
        if (self->mll_state == MLL_INT && dend - pos > self->mll)
            return NULL;
        Py_INCREF(buf);
        if (kind == BYTES_LINE_NL)
            line = PyBytes_FromStringAndSize(b + pos, lend - pos);
        else if (kind == STR_LINE) {
            PyObject *s = text_decode(self, buf, pos, dend - pos);
            line = pair_false(self, s);
        }
        else
            line = text_decode(self, buf, pos, lend - pos);
        if (line == NULL) {
            Py_DECREF(buf);
            return NULL;
        }
        if (UNCHANGED(self, pos, epoch, buf)) {
            Py_DECREF(buf);
            SET_POS(self, lend);
            self->run += 1;
            return line;
        }
        Py_DECREF(buf);
        Py_DECREF(line);
    }
}

/* The data before the next ``delimiter`` (exact, non-empty bytes) within ``limit`` (None or
 * an int; a negative one is the Python path's to judge), as str if ``text``, committed with the
 * delimiter; NULL with no error set if the Python path must decide (not found, a resumed
 * search, a batch, a state outside the invariants). */
static PyObject *
until_fast(Buf *self, PyObject *delimiter, int text, PyObject *limit)
{
    Py_ssize_t lim = -1;
    if (!(PyBytes_CheckExact(delimiter) && PyBytes_GET_SIZE(delimiter) > 0
          && (limit == Py_None || PyLong_CheckExact(limit))))
        return NULL;
    if (limit != Py_None) {
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(limit, &overflow);
        if (overflow > 0)
            lim = PY_SSIZE_T_MAX;
        else if (overflow < 0 || v < 0)
            return NULL; /* a negative limit: the Python path */
        else
            lim = v > PY_SSIZE_T_MAX ? PY_SSIZE_T_MAX : (Py_ssize_t)v;
    }
    while (self->batch == Py_None) {
        const char *b = valid_bytes(self);
        PyObject *buf, *until = self->until, *data;
        Py_ssize_t pos, epoch, i, n;
        if (b == NULL || until == NULL || !PyTuple_CheckExact(until)
            || PyTuple_GET_SIZE(until) < 1 || !PyLong_CheckExact(PyTuple_GET_ITEM(until, 0)))
            return NULL;
        pos = self->pos;
        {
            Py_ssize_t u0 = PyLong_AsSsize_t(PyTuple_GET_ITEM(until, 0));
            if (u0 == -1 && PyErr_Occurred()) {
                PyErr_Clear();
                return NULL;
            }
            if (u0 == pos)
                return NULL; /* a resumed search: the Python path */
        }
        epoch = self->epoch;
        n = PyBytes_GET_SIZE(delimiter);
        i = find_bytes(b, pos, self->end, PyBytes_AS_STRING(delimiter), n);
        if (i < 0 || (limit != Py_None && i - pos > lim))
            return NULL;
        buf = self->buf;
        Py_INCREF(buf);
        if (!text)
            data = PyBytes_FromStringAndSize(b + pos, i - pos);
        else if (self->codec != NULL)
            data = text_decode(self, buf, pos, i - pos);
        else
            data = PyUnicode_DecodeLatin1(b + pos, i - pos, NULL);
        if (data == NULL) {
            Py_DECREF(buf);
            return NULL;
        }
        if (UNCHANGED(self, pos, epoch, buf)) {
            Py_DECREF(buf);
            SET_POS(self, i + n);
            self->run += 1;
            return data;
        }
        Py_DECREF(buf);
        Py_DECREF(data);
    }
    return NULL;
}

static const char *const until_names[] = {"delimiter", "text", "limit"};

static PyObject *
Buf_maybe_take_until(Buf *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *a[3] = {NULL, NULL, NULL};
    PyObject *delimiter, *limit, *stack[3], *data, *r;
    int text;
    if (nargs >= 2 && nargs <= 3 && kwnames == NULL) {
        a[0] = args[0];
        a[1] = args[1];
        a[2] = nargs == 3 ? args[2] : NULL;
    }
    else if (parse_args("maybe_take_until", args, nargs, kwnames, until_names, 3, 2, a) < 0)
        return NULL;
    delimiter = a[0];
    limit = a[2] ? a[2] : int_minus_one;
    /* ``if limit == -1: limit = self._max_line`` */
    if (limit == int_minus_one || (PyLong_CheckExact(limit) && PyLong_AsSsize_t(limit) == -1))
        limit = self->max_line;
    else if (PyErr_Occurred())
        PyErr_Clear(); /* an int too large for -1: not -1 */
    Py_INCREF(limit);
    text = PyObject_IsTrue(a[1]);
    if (text < 0) {
        Py_DECREF(limit);
        return NULL;
    }
    data = until_fast(self, delimiter, text, limit);
    if (data != NULL || PyErr_Occurred()) {
        Py_DECREF(limit);
        return data;
    }
    stack[0] = delimiter;
    stack[1] = text ? Py_True : Py_False;
    stack[2] = limit;
    r = call_method(self, str_take_until, stack, 3);
    Py_DECREF(limit);
    return r;
}

/* ---- read_sequence ----------------------------------------------------------------------- */

static const char *const seq_names[] = {"seq", "start", "end"};

static PyObject *
Buf_read_sequence(Buf *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *a[3] = {NULL, NULL, NULL};
    PyObject *stack[3];
    PyObject *seq, *start, *end;
    if (nargs >= 1 && nargs <= 3 && kwnames == NULL) {
        a[0] = args[0];
        a[1] = nargs >= 2 ? args[1] : NULL;
        a[2] = nargs >= 3 ? args[2] : NULL;
    }
    else if (parse_args("read_sequence", args, nargs, kwnames, seq_names, 3, 1, a) < 0)
        return NULL;
    if (self->batch != Py_None)
        return defer(self, str_py_read_sequence, args, nargs, kwnames);
    seq = a[0];
    start = a[1] ? a[1] : int_zero;
    end = a[2] ? a[2] : Py_None;
    if (PyByteArray_CheckExact(seq) && self->batch == Py_None) {
        /* The whole bytearray, or seq[lo:hi] with both exact ints in range (anything else:
         * the slow path, which judges the arguments), when that much is buffered. */
        Py_ssize_t len = PyByteArray_GET_SIZE(seq), lo = 0, hi = len;
        int ok = 1;
        if (start != int_zero) {
            ok = PyLong_CheckExact(start) && (lo = PyLong_AsSsize_t(start)) >= 0;
            if (!ok && PyErr_Occurred())
                PyErr_Clear();
        }
        if (end != Py_None) {
            if (ok) {
                ok = PyLong_CheckExact(end) && (hi = PyLong_AsSsize_t(end)) >= 0;
                if (!ok && PyErr_Occurred())
                    PyErr_Clear();
            }
        }
        else if (start != int_zero)
            ok = 0; /* a start without an end: the slow path (as the pure twin) */
        if (ok && lo < hi && hi <= len) {
            const char *b = valid_bytes(self);
            Py_ssize_t n = hi - lo;
            Py_ssize_t pos = self->pos;
            if (b != NULL && n <= self->end - pos) {
                /* One run without a call: the copy and the commit (memmove: seq may be _buf). */
                memmove(PyByteArray_AS_STRING(seq) + lo, b + pos, (size_t)n);
                SET_POS(self, pos + n);
                self->run = 0;
                return PyLong_FromSsize_t(hi);
            }
        }
    }
    stack[0] = seq;
    stack[1] = start;
    stack[2] = end;
    return call_slow(self->slow_seq, stack, 3);
}

/* ---- the type ----------------------------------------------------------------------------- */

static PyObject *
Buf_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    Buf *self = (Buf *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->buf = PyByteArray_FromStringAndSize(NULL, 0);
    if (self->buf == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->mark = -1;
    self->kind = BYTES_LINE_NL;
    self->mll = -1;
    self->mll_state = MLL_NONE;
#define NONE(f) (Py_INCREF(Py_None), self->f = Py_None)
    NONE(max_line);
    NONE(batch);
    NONE(settling);
    NONE(until);
    NONE(slow_char);
    NONE(slow_byte);
    NONE(slow_line);
    NONE(slow_seq);
    NONE(slow_read_line);
    NONE(owner);
    NONE(fill);
    NONE(line_end);
    NONE(table);
    NONE(until_delimiter);
#undef NONE
    self->codec_kind = -1;
    self->nl_mode = -1;
    Py_INCREF(Py_None);
    self->last = Py_None;
    Py_INCREF(NO_BATCH);
    self->next_line = NO_BATCH;
    Py_INCREF(NO_BATCH);
    self->next_line_tuple = NO_BATCH;
    Py_INCREF(NO_BATCH);
    self->next_until = NO_BATCH;
    return (PyObject *)self;
}

static int
Buf_traverse(Buf *self, visitproc visit, void *arg)
{
    Py_VISIT(self->buf);
    Py_VISIT(self->max_line);
    Py_VISIT(self->batch);
    Py_VISIT(self->settling);
    Py_VISIT(self->until);
    Py_VISIT(self->slow_char);
    Py_VISIT(self->slow_byte);
    Py_VISIT(self->slow_line);
    Py_VISIT(self->slow_seq);
    Py_VISIT(self->slow_read_line);
    Py_VISIT(self->owner);
    Py_VISIT(self->fill);
    Py_VISIT(self->line_end);
    Py_VISIT(self->table);
    Py_VISIT(self->next_line);
    Py_VISIT(self->next_line_tuple);
    Py_VISIT(self->next_until);
    Py_VISIT(self->until_delimiter);
    Py_VISIT(self->codec);
    Py_VISIT(self->newline);
    Py_VISIT(self->last);
    Py_VISIT(self->canonical);
    Py_VISIT(self->errors);
    Py_VISIT(self->wtext);
    Py_VISIT(self->wbuf);
    Py_VISIT(self->pair);
    return 0;
}

static int
Buf_clear(Buf *self)
{
    Py_CLEAR(self->buf);
    Py_CLEAR(self->max_line);
    Py_CLEAR(self->batch);
    Py_CLEAR(self->settling);
    Py_CLEAR(self->until);
    Py_CLEAR(self->slow_char);
    Py_CLEAR(self->slow_byte);
    Py_CLEAR(self->slow_line);
    Py_CLEAR(self->slow_seq);
    Py_CLEAR(self->slow_read_line);
    Py_CLEAR(self->owner);
    Py_CLEAR(self->fill);
    Py_CLEAR(self->line_end);
    Py_CLEAR(self->table);
    Py_CLEAR(self->next_line);
    Py_CLEAR(self->next_line_tuple);
    Py_CLEAR(self->next_until);
    Py_CLEAR(self->until_delimiter);
    Py_CLEAR(self->codec);
    Py_CLEAR(self->newline);
    Py_CLEAR(self->last);
    Py_CLEAR(self->canonical);
    Py_CLEAR(self->errors);
    Py_CLEAR(self->wtext);
    Py_CLEAR(self->wbuf);
    Py_CLEAR(self->pair);
    self->wvalid = 0;
    return 0;
}

static void
Buf_dealloc(Buf *self)
{
    PyObject_GC_UnTrack(self);
    Buf_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
Buf_get_max_line(Buf *self, void *closure)
{
    if (self->max_line == NULL) {
        PyErr_SetString(PyExc_AttributeError, "_max_line");
        return NULL;
    }
    Py_INCREF(self->max_line);
    return self->max_line;
}

static int
Buf_set_max_line(Buf *self, PyObject *value, void *closure)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete _max_line");
        return -1;
    }
    if (value == Py_None) {
        self->mll_state = MLL_NONE;
        self->mll = -1;
    }
    else if (PyLong_CheckExact(value)) {
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow || v < 0 || v > PY_SSIZE_T_MAX)
            self->mll_state = MLL_OTHER; /* the Python paths judge it */
        else {
            self->mll_state = MLL_INT;
            self->mll = (Py_ssize_t)v;
        }
    }
    else
        self->mll_state = MLL_OTHER;
    Py_INCREF(value);
    Py_SETREF(self->max_line, value);
    return 0;
}

static PyObject *
Buf_get_codec(Buf *self, void *closure)
{
    if (self->codec == NULL) {
        PyErr_SetString(PyExc_AttributeError, "_codec");
        return NULL;
    }
    Py_INCREF(self->codec);
    return self->codec;
}

/* The text buffer's codec: its canonical name, error handler and kind are kept for C. */
static int
Buf_set_codec(Buf *self, PyObject *value, void *closure)
{
    PyObject *canonical = NULL, *errors = NULL, *kind = NULL;
    int ckind = -1;
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete _codec");
        return -1;
    }
    canonical = PyObject_GetAttr(value, str_canonical);
    errors = canonical ? PyObject_GetAttr(value, str_errors) : NULL;
    kind = errors ? PyObject_GetAttr(value, str_kind) : NULL;
    if (kind == NULL) {
        Py_XDECREF(canonical);
        Py_XDECREF(errors);
        return -1;
    }
    if (PyUnicode_CheckExact(canonical) && PyUnicode_CheckExact(errors) && PyLong_CheckExact(kind)
        && PyUnicode_AsUTF8(canonical) != NULL && PyUnicode_AsUTF8(errors) != NULL) {
        long k = PyLong_AsLong(kind);
        if (k >= 0 && k <= 4)
            ckind = (int)k;
    }
    if (PyErr_Occurred())
        PyErr_Clear(); /* an odd codec: the Python paths judge it */
    Py_DECREF(kind);
    Py_INCREF(value);
    Py_XSETREF(self->codec, value);
    Py_XSETREF(self->canonical, canonical);
    Py_XSETREF(self->errors, errors);
    self->codec_kind = ckind;
    self->strict = PyUnicode_CheckExact(errors) && PyUnicode_CompareWithASCIIString(errors, "strict") == 0;
    self->wvalid = 0;
    return 0;
}

static PyObject *
Buf_get_newline(Buf *self, void *closure)
{
    if (self->newline == NULL) {
        PyErr_SetString(PyExc_AttributeError, "_newline");
        return NULL;
    }
    Py_INCREF(self->newline);
    return self->newline;
}

static int
Buf_set_newline(Buf *self, PyObject *value, void *closure)
{
    int mode = -1;
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete _newline");
        return -1;
    }
    if (value == Py_None)
        mode = NL_LENIENT;
    else if (PyUnicode_CheckExact(value)) {
        if (PyUnicode_CompareWithASCIIString(value, "\n") == 0)
            mode = NL_LF;
        else if (PyUnicode_CompareWithASCIIString(value, "\r\n") == 0)
            mode = NL_CRLF;
    }
    Py_INCREF(value);
    Py_XSETREF(self->newline, value);
    self->nl_mode = mode;
    self->wvalid = 0;
    return 0;
}

/* _pos, _epoch and _buf: a write from Python (any pure method) ends the text window. */
static PyObject *
Buf_get_pos(Buf *self, void *closure)
{
    return PyLong_FromSsize_t(self->pos);
}

static PyObject *
Buf_get_epoch(Buf *self, void *closure)
{
    return PyLong_FromSsize_t(self->epoch);
}

static int
set_ssize(Py_ssize_t *field, PyObject *value, const char *name)
{
    Py_ssize_t v;
    if (value == NULL) {
        PyErr_Format(PyExc_AttributeError, "cannot delete %s", name);
        return -1;
    }
    if (!PyLong_Check(value)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %R", name, value);
        return -1;
    }
    v = PyLong_AsSsize_t(value);
    if (v == -1 && PyErr_Occurred())
        return -1;
    *field = v;
    return 0;
}

static int
Buf_set_pos(Buf *self, PyObject *value, void *closure)
{
    self->wvalid = 0;
    return set_ssize(&self->pos, value, "_pos");
}

static int
Buf_set_epoch(Buf *self, PyObject *value, void *closure)
{
    self->wvalid = 0;
    return set_ssize(&self->epoch, value, "_epoch");
}

static PyObject *
Buf_get_buf(Buf *self, void *closure)
{
    if (self->buf == NULL) {
        PyErr_SetString(PyExc_AttributeError, "_buf");
        return NULL;
    }
    Py_INCREF(self->buf);
    return self->buf;
}

static int
Buf_set_buf(Buf *self, PyObject *value, void *closure)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete _buf");
        return -1;
    }
    self->wvalid = 0;
    Py_INCREF(value);
    Py_XSETREF(self->buf, value);
    return 0;
}

static PyGetSetDef Buf_getset[] = {
    {"_pos", (getter)Buf_get_pos, (setter)Buf_set_pos, "Where the unconsumed bytes begin.", NULL},
    {"_epoch", (getter)Buf_get_epoch, (setter)Buf_set_epoch, "Bumped when bytes move.", NULL},
    {"_buf", (getter)Buf_get_buf, (setter)Buf_set_buf, "The bytes (a bytearray).", NULL},
    {"_codec", (getter)Buf_get_codec, (setter)Buf_set_codec, "The text buffer's Codec.", NULL},
    {"_newline", (getter)Buf_get_newline, (setter)Buf_set_newline,
     "The text buffer's newline setting.", NULL},
    {"_max_line", (getter)Buf_get_max_line, (setter)Buf_set_max_line,
     "The line-length limit (bytes, without the newline), or None.", NULL},
    {NULL},
};

#define OBJ(name, field) {name, SS_T_OBJECT_EX, offsetof(Buf, field), 0, NULL}
#define SSZ(name, field) {name, SS_T_PYSSIZET, offsetof(Buf, field), 0, NULL}
static PyMemberDef Buf_members[] = {
    SSZ("_end", end),
    SSZ("_scan", scan),
    SSZ("_mark", mark),
    SSZ("_run", run),
    SSZ("_window", window),
    SSZ("_size", size),
    SSZ("_kind", kind),
    OBJ("_batch", batch),
    OBJ("_settling", settling),
    OBJ("_until", until),
    OBJ("_slow_char", slow_char),
    OBJ("_slow_byte", slow_byte),
    OBJ("_slow_line", slow_line),
    OBJ("_slow_seq", slow_seq),
    OBJ("_slow_read_line", slow_read_line),
    OBJ("_owner", owner),
    OBJ("_fill", fill),
    OBJ("_line_end", line_end),
    OBJ("_table", table),
    OBJ("next_line", next_line),
    OBJ("next_line_tuple", next_line_tuple),
    OBJ("next_until", next_until),
    OBJ("until_delimiter", until_delimiter),
    OBJ("_last", last),
    {NULL},
};
#undef OBJ
#undef SSZ

#define FK (METH_FASTCALL | METH_KEYWORDS)
static PyMethodDef Buf_methods[] = {
    {"read_char", (PyCFunction)(void (*)(void))Buf_read_char, FK,
     "SocketStream.read_char: a buffered character, else the stream's slow path."},
    {"read_byte", (PyCFunction)(void (*)(void))Buf_read_byte, FK,
     "SocketStream.read_byte: a buffered byte, else the stream's slow path."},
    {"readline", (PyCFunction)(void (*)(void))Buf_readline, FK,
     "SocketStream.readline: a whole buffered line, else the stream's slow path."},
    {"read_line", (PyCFunction)(void (*)(void))Buf_read_line, FK,
     "SocketStream.read_line: (line, False) from a whole buffered line, else the slow path."},
    {"read_sequence", (PyCFunction)(void (*)(void))Buf_read_sequence, FK,
     "SocketStream.read_sequence: a whole bytearray filled from here, else the slow path."},
    {"maybe_take_char", (PyCFunction)(void (*)(void))Buf_maybe_take_char, FK,
     "One character (Latin-1), or None if nothing is buffered."},
    {"maybe_take_byte", (PyCFunction)Buf_maybe_take_byte, METH_O,
     "One byte through table, or None if nothing is buffered."},
    {"peek_char", (PyCFunction)(void (*)(void))Buf_peek_char, FK,
     "The next character, not consumed, or None if nothing is buffered."},
    {"has_char", (PyCFunction)Buf_has_char, METH_NOARGS, "True if a character is buffered."},
    {"maybe_take_line", (PyCFunction)(void (*)(void))Buf_maybe_take_line, FK,
     "One whole line in kind's form, or None if no whole line is buffered."},
    {"maybe_take_until", (PyCFunction)(void (*)(void))Buf_maybe_take_until, FK,
     "The data before the next delimiter, which is consumed too; None if not buffered."},
    {"writable", (PyCFunction)(void (*)(void))Buf_writable, FK,
     "A view of the free tail, at least want bytes of room made."},
    {"commit", (PyCFunction)Buf_commit, METH_O,
     "Account for n bytes written into the view writable returned."},
    {NULL},
};
#undef FK

static PyTypeObject BufType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sockstream._speedups.InputBufferBase",
    .tp_basicsize = sizeof(Buf),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The state of an input buffer in C, and its hot verbs (see sockstream._impl).",
    .tp_new = Buf_new,
    .tp_dealloc = (destructor)Buf_dealloc,
    .tp_traverse = (traverseproc)Buf_traverse,
    .tp_clear = (inquiry)Buf_clear,
    .tp_methods = Buf_methods,
    .tp_members = Buf_members,
    .tp_getset = Buf_getset,
};

/* ---- the stream's reading verbs (StreamBase) --------------------------------------------
 *
 * ``SocketStream`` subclasses ``StreamBase`` (``_impl.StreamBase``) when the twin is in use;
 * ``_impl.twin_stream`` moves the stream's pure ``peek_char``, ``unread_char``, ``listen``,
 * ``read_until`` and ``__next__`` to ``_py_<verb>``, so these names resolve to the C methods
 * below (``__next__`` to the type's tp_iternext: ``for line in stream`` calls C).  Each serves
 * what the buffer (``_in``, a C field) holds and hands every other call, with the same
 * arguments, to the pure method: refusal, waiting, TLS, timeouts, argument errors (so the
 * messages are the pure ones).  A buffer that holds input belongs to a stream open for reading
 * (every state change clears it), which is why the served cases need no state check, as
 * ``read_char`` needs none. */

typedef struct {
    PyObject_HEAD
    PyObject *in;        /* the stream's input buffer (``_in``) */
    PyObject *watchers;  /* ``_watchers`` (a tuple), read by unread_char */
    PyObject *timed_out; /* ``_timed_out`` (a bool), read by unread_char */
} Stream;

static PyObject *str_py_unread_char, *str_py_listen, *str_py_read_until, *str_py_next;
static PyObject *str_py_read;
static PyObject *str_eof_error, *str_eof_value, *str_max_length;

/* The C buffer, or NULL (none yet, or a pure buffer: the pure methods serve it). */
static inline Buf *
stream_buf(Stream *self)
{
    PyObject *in = self->in;
    if (in == NULL || !PyObject_TypeCheck(in, &BufType))
        return NULL;
    return (Buf *)in;
}

/* The pure verb (``_py_<verb>``), with the call's own arguments. */
static PyObject *
stream_defer(Stream *self, PyObject *name, PyObject *const *args, Py_ssize_t nargs,
             PyObject *kwnames)
{
    PyObject *stack[8];
    Py_ssize_t i, total = nargs + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
    if (total > 7) {
        PyObject *meth = PyObject_GetAttr((PyObject *)self, name), *r;
        if (meth == NULL)
            return NULL;
        r = PyObject_Vectorcall(meth, args, (size_t)nargs, kwnames);
        Py_DECREF(meth);
        return r;
    }
    stack[0] = (PyObject *)self;
    for (i = 0; i < total; i++)
        stack[i + 1] = args[i];
    return PyObject_VectorcallMethod(name, stack, (size_t)(nargs + 1), kwnames);
}

/* True if the keyword arguments are among ``eof_error``/``eof_value`` (after ``first``
 * positional ones that are not those), and with ``max_length_ok`` also ``max_length=None``:
 * a call shape the pure verb takes, whose values the served case does not use. */
static int
eof_call_ok(Py_ssize_t nargs, Py_ssize_t first, PyObject *const *args, PyObject *kwnames,
            int max_length_ok)
{
    Py_ssize_t j, nkw;
    int seen_error = nargs > first, seen_value = nargs > first + 1;
    if (nargs > first + 2)
        return 0;
    if (kwnames == NULL)
        return 1;
    nkw = PyTuple_GET_SIZE(kwnames);
    for (j = 0; j < nkw; j++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, j);
        if (key == str_eof_error && !seen_error)
            seen_error = 1;
        else if (key == str_eof_value && !seen_value)
            seen_value = 1;
        else if (max_length_ok && key == str_max_length && args[nargs + j] == Py_None)
            max_length_ok = 0; /* (once) */
        else
            return 0; /* anything else (not interned, twice, unknown): the pure verb judges */
    }
    return 1;
}

/* The next whole character, not consumed; NULL with no error set if the pure path decides. */
static PyObject *
peek_fast(Buf *ib)
{
    const char *b;
    if (ib->batch != Py_None)
        return NULL;
    if (ib->codec != NULL)
        return text_peek_char_fast(ib);
    b = valid_bytes(ib);
    if (b == NULL || ib->pos >= ib->end)
        return NULL;
    return PyUnicode_FromOrdinal((unsigned char)b[ib->pos]);
}

static PyObject *
Stream_peek_char(Stream *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    Buf *ib = stream_buf(self);
    if (ib != NULL && eof_call_ok(nargs, 0, args, kwnames, 0)) {
        PyObject *c;
        Py_INCREF(ib); /* (a codec written in Python may run, and replace the stream's _in) */
        c = peek_fast(ib);
        Py_DECREF(ib);
        if (c != NULL || PyErr_Occurred())
            return c;
    }
    return stream_defer(self, str_py_peek_char, args, nargs, kwnames);
}

static PyObject *
Stream_listen(Stream *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    Buf *ib = stream_buf(self);
    if (ib != NULL && nargs == 0 && kwnames == NULL) {
        PyObject *c;
        Py_INCREF(ib);
        c = peek_fast(ib);
        Py_DECREF(ib);
        if (c != NULL) {
            Py_DECREF(c);
            Py_RETURN_TRUE;
        }
        if (PyErr_Occurred())
            return NULL;
    }
    return stream_defer(self, str_py_listen, args, nargs, kwnames);
}

/* True if the stream has no watchers and its last read did not time out (the pure
 * unread_char then has nothing to do but the buffer's unread); C fields: no Python code runs. */
static int
stream_quiet(Stream *self)
{
    PyObject *w = self->watchers;
    return w != NULL && PyTuple_CheckExact(w) && PyTuple_GET_SIZE(w) == 0
           && self->timed_out == Py_False;
}

static PyObject *
Stream_unread_char(Stream *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    Buf *ib = stream_buf(self);
    if (ib != NULL && nargs == 1 && kwnames == NULL && PyUnicode_CheckExact(args[0])
        && PyUnicode_GET_LENGTH(args[0]) == 1 && stream_quiet(self) && ib->batch == Py_None) {
        /* (nothing runs Python code from here to the commit) */
        PyObject *ch = args[0];
        const char *b = valid_bytes(ib);
        Py_ssize_t pos = ib->pos, size = -1;
        if (b != NULL && pos != ib->mark) {
            if (ib->codec == NULL) {
                Py_UCS4 code = PyUnicode_READ_CHAR(ch, 0);
                if (code < 256 && pos > 0 && (unsigned char)b[pos - 1] == code)
                    size = 1;
            }
            else {
                /* As the pure text buffer: the character its last read decoded. */
                PyObject *last = ib->last;
                if (last != NULL && PyTuple_CheckExact(last) && PyTuple_GET_SIZE(last) == 4
                    && PyLong_CheckExact(PyTuple_GET_ITEM(last, 0))
                    && PyLong_CheckExact(PyTuple_GET_ITEM(last, 1))
                    && PyLong_CheckExact(PyTuple_GET_ITEM(last, 2))
                    && PyUnicode_CheckExact(PyTuple_GET_ITEM(last, 3))
                    && PyLong_AsSsize_t(PyTuple_GET_ITEM(last, 0)) == pos
                    && PyLong_AsSsize_t(PyTuple_GET_ITEM(last, 1)) == ib->epoch
                    && PyUnicode_Compare(PyTuple_GET_ITEM(last, 3), ch) == 0) {
                    size = PyLong_AsSsize_t(PyTuple_GET_ITEM(last, 2));
                    if (size <= 0 || size > pos)
                        size = -1;
                }
                if (PyErr_Occurred()) {
                    PyErr_Clear();
                    size = -1;
                }
            }
        }
        if (size > 0) {
            /* One run: the bytes come back and can be read again, once. */
            SET_POS(ib, pos - size);
            ib->scan = ib->mark = pos - size;
            if (ib->codec != NULL)
                Py_XSETREF(ib->last, Py_NewRef(Py_None));
            Py_RETURN_NONE;
        }
    }
    return stream_defer(self, str_py_unread_char, args, nargs, kwnames);
}

static PyObject *
Stream_read_until(Stream *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    Buf *ib = stream_buf(self);
    if (ib != NULL && nargs >= 1 && eof_call_ok(nargs, 1, args, kwnames, 1)) {
        PyObject *data, *limit = ib->max_line;
        Py_INCREF(ib); /* (a codec written in Python may run, and replace the stream's _in) */
        Py_INCREF(limit);
        data = until_fast(ib, args[0], ib->kind != BYTES_LINE_NL, limit);
        Py_DECREF(limit);
        if (data != NULL)
            data = pair_false(ib, data);
        Py_DECREF(ib);
        if (data != NULL || PyErr_Occurred())
            return data;
    }
    return stream_defer(self, str_py_read_until, args, nargs, kwnames);
}

/* ``read(n)``: n bytes (a byte stream) or n characters (Latin-1, the plain buffer) when at
 * least that many are buffered; every other call (the default -1, 0, None, a bad size, more
 * than is buffered, a text buffer's characters) is the pure method's. */
static PyObject *
Stream_read(Stream *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    Buf *ib = stream_buf(self);
    if (ib != NULL && nargs == 1 && kwnames == NULL && PyLong_CheckExact(args[0])
        && ib->batch == Py_None && (ib->kind == BYTES_LINE_NL || ib->codec == NULL)) {
        const char *b = valid_bytes(ib);
        Py_ssize_t n = PyLong_AsSsize_t(args[0]), pos = ib->pos;
        if (n == -1 && PyErr_Occurred())
            PyErr_Clear(); /* too large: the pure method says so */
        else if (b != NULL && n >= 1 && n <= ib->end - pos) {
            /* (no call between reading pos and the commit: nothing can move) */
            PyObject *data = ib->kind == BYTES_LINE_NL ? PyBytes_FromStringAndSize(b + pos, n)
                                                       : PyUnicode_DecodeLatin1(b + pos, n, NULL);
            if (data == NULL)
                return NULL;
            SET_POS(ib, pos + n);
            ib->run = 0;
            return data;
        }
    }
    return stream_defer(self, str_py_read, args, nargs, kwnames);
}

/* ``for line in stream``: a whole buffered line, in readline's form, else the pure
 * ``__next__`` (which waits, or raises StopIteration). */
static PyObject *
Stream_iternext(Stream *self)
{
    Buf *ib = stream_buf(self);
    if (ib != NULL && ib->batch == Py_None) {
        PyObject *line = line_hit(ib, ib->kind); /* (no Python code runs there) */
        if (line != NULL || PyErr_Occurred())
            return line;
        Py_INCREF(ib); /* (a codec written in Python may run, and replace the stream's _in) */
        line = take_line_fast(ib, ib->kind);
        Py_DECREF(ib);
        if (line != NULL || PyErr_Occurred())
            return line;
    }
    return PyObject_CallMethodNoArgs((PyObject *)self, str_py_next);
}

static int
Stream_traverse(Stream *self, visitproc visit, void *arg)
{
    Py_VISIT(self->in);
    Py_VISIT(self->watchers);
    Py_VISIT(self->timed_out);
    return 0;
}

static int
Stream_clear(Stream *self)
{
    Py_CLEAR(self->in);
    Py_CLEAR(self->watchers);
    Py_CLEAR(self->timed_out);
    return 0;
}

static void
Stream_dealloc(Stream *self)
{
    PyObject_GC_UnTrack(self);
    Stream_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef Stream_members[] = {
    {"_in", SS_T_OBJECT_EX, offsetof(Stream, in), 0, "The stream's input buffer."},
    {"_watchers", SS_T_OBJECT_EX, offsetof(Stream, watchers), 0, "What watches the stream."},
    {"_timed_out", SS_T_OBJECT_EX, offsetof(Stream, timed_out), 0,
     "True if the last read timed out."},
    {NULL},
};

#define FK (METH_FASTCALL | METH_KEYWORDS)
static PyMethodDef Stream_methods[] = {
    {"peek_char", (PyCFunction)(void (*)(void))Stream_peek_char, FK,
     "peek_char($self, /, eof_error=True, eof_value=None)\n--\n\n"
     "The next character, left in the stream; at end-of-file as ``read_char``."},
    {"unread_char", (PyCFunction)(void (*)(void))Stream_unread_char, FK,
     "unread_char($self, /, char)\n--\n\n"
     "Put back ``char``, which must be the character just read."},
    {"listen", (PyCFunction)(void (*)(void))Stream_listen, FK,
     "listen($self, /)\n--\n\n"
     "True if a character is available without waiting (false at end-of-file)."},
    {"read_until", (PyCFunction)(void (*)(void))Stream_read_until, FK,
     "read_until($self, /, delimiter, eof_error=True, eof_value=None, *, max_length=None)\n--\n\n"
     "Read up to ``delimiter``: ``(data_before_it, missing_delimiter)`` (see the pure method,\n"
     "``_py_read_until``)."},
    {"read", (PyCFunction)(void (*)(void))Stream_read, FK,
     "read($self, /, size=-1)\n--\n\n"
     "Read ``size`` elements (all until end-of-file if negative), in the natural type."},
    {NULL},
};
#undef FK

static PyTypeObject StreamType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sockstream._speedups.StreamBase",
    .tp_basicsize = sizeof(Stream),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The stream's reading verbs in C, over its input buffer (see sockstream._impl).",
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)Stream_dealloc,
    .tp_traverse = (traverseproc)Stream_traverse,
    .tp_clear = (inquiry)Stream_clear,
    .tp_iternext = (iternextfunc)Stream_iternext,
    .tp_methods = Stream_methods,
    .tp_members = Stream_members,
};

/* ==== the output buffer (OutputBufferBase): the writing verbs ============================== *
 *
 * The twin of ``_output.OutputBuffer``: its state as members of the same names (``buf``,
 * ``enc``, ``kind``, ``char_limit``, ``eol``, ``lo``, ``hi``, ``_owner``), and its six verbs in C
 * for the common shapes: an exact ``str`` (Latin-1, ASCII and UTF-8, see ``kind``), an exact
 * ``bytes``/``bytearray``, an exact ``int``.  Anything else, and a buffer that is not a live
 * exact bytearray (``REFUSED`` is pinned: a side that is not OPEN), goes to the pure method
 * (``_py_<verb>``), which hands what it does not serve to the stream's slow path.  An append
 * loads ``buf`` and writes into it with no Python code between (a flush in another thread
 * swaps ``buf`` whole; a signal handler runs only after the call): nothing is written twice or
 * half.  When the buffer reaches ``OUTPUT_BUFFER_SIZE`` the pure ``_full`` flushes it.
 */

#define OUT_FULL 65536 /* _buffer.OUTPUT_BUFFER_SIZE */
#define OUT_LATIN1 0   /* _text's codec kinds */
#define OUT_ASCII 1
#define OUT_UTF8 2

typedef struct {
    PyObject_HEAD
    PyObject *buf;
    PyObject *enc;
    PyObject *eol;
    PyObject *owner;
    Py_ssize_t kind;
    Py_ssize_t char_limit;
    Py_ssize_t lo;
    Py_ssize_t hi;
} Out;

static PyObject *str_full, *str_py_write_char, *str_py_write_string, *str_py_write_line;
static PyObject *str_py_write_byte, *str_py_write_sequence, *str_py_write;

/* The pure method ``name`` with the same arguments (it serves every case, errors included). */
static PyObject *
out_defer(Out *self, PyObject *name, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *stack[8];
    Py_ssize_t i, total = nargs + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
    if (total > 7) {
        PyErr_SetString(PyExc_TypeError, "too many arguments");
        return NULL;
    }
    stack[0] = (PyObject *)self;
    for (i = 0; i < total; i++)
        stack[i + 1] = args[i];
    return PyObject_VectorcallMethod(name, stack, (size_t)(nargs + 1), kwnames);
}

/* Append a[0:na] and b[0:nb] to ``buf`` in one step if it is a live exact bytearray: 1 done,
 * 0 not done (hand over), -1 error.  Neither source may be ``buf`` itself. */
static int
out_append(Out *self, const char *a, Py_ssize_t na, const char *b, Py_ssize_t nb)
{
    PyObject *buf = self->buf;
    Py_ssize_t len;
    if (buf == NULL || !PyByteArray_CheckExact(buf)
        || ((PyByteArrayObject *)buf)->ob_exports > 0)
        return 0;
    len = PyByteArray_GET_SIZE(buf);
    if (na > PY_SSIZE_T_MAX - len - nb)
        return 0;
    if (na + nb == 0)
        return 1;
    if (PyByteArray_Resize(buf, len + na + nb) < 0)
        return -1;
    if (na)
        memcpy(PyByteArray_AS_STRING(buf) + len, a, (size_t)na);
    if (nb)
        memcpy(PyByteArray_AS_STRING(buf) + len + na, b, (size_t)nb);
    return 1;
}

/* After an append: flush (the pure ``_full``) once the buffer is full; None, or NULL. */
static PyObject *
out_done(Out *self)
{
    PyObject *buf = self->buf, *r;
    if (buf != NULL && PyByteArray_CheckExact(buf) && PyByteArray_GET_SIZE(buf) >= OUT_FULL) {
        PyObject *stack[1] = {(PyObject *)self};
        r = PyObject_VectorcallMethod(str_full, stack, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
    }
    Py_RETURN_NONE;
}

/* Append exact str ``s`` encoded (and ``eol`` after it if ``with_eol``): 1 done, 0 hand over
 * (a codec, a character or a state that the pure method judges), -1 error. */
static int
out_append_str(Out *self, PyObject *s, int with_eol)
{
    const char *e = NULL;
    Py_ssize_t ne = 0, n;
    int r;
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(s) < 0)
        return -1;
#endif
    if (with_eol) {
        if (self->eol == NULL || !PyBytes_CheckExact(self->eol))
            return 0;
        e = PyBytes_AS_STRING(self->eol);
        ne = PyBytes_GET_SIZE(self->eol);
    }
    n = PyUnicode_GET_LENGTH(s);
    if (self->kind == OUT_LATIN1 ? PyUnicode_KIND(s) == PyUnicode_1BYTE_KIND
                                 : (self->kind == OUT_ASCII || self->kind == OUT_UTF8)
                                       && PyUnicode_IS_ASCII(s))
        return out_append(self, (const char *)PyUnicode_1BYTE_DATA(s), n, e, ne);
    if (self->kind == OUT_UTF8) {
        PyObject *data = PyUnicode_AsUTF8String(s); /* strict, in C: no Python code */
        if (data == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError))
                return -1;
            PyErr_Clear(); /* the pure method: the error handler, or the error */
            return 0;
        }
        r = out_append(self, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), e, ne);
        Py_DECREF(data);
        return r;
    }
    return 0;
}

/* Exact bytes or bytearray (not ``buf`` itself): 1 done, 0 hand over, -1 error. */
static int
out_append_bytes(Out *self, PyObject *o)
{
    if (PyBytes_CheckExact(o))
        return out_append(self, PyBytes_AS_STRING(o), PyBytes_GET_SIZE(o), NULL, 0);
    if (PyByteArray_CheckExact(o) && o != self->buf)
        return out_append(self, PyByteArray_AS_STRING(o), PyByteArray_GET_SIZE(o), NULL, 0);
    return 0;
}

static PyObject *
Out_write_char(Out *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs == 1 && kwnames == NULL && PyUnicode_CheckExact(args[0])) {
        PyObject *c = args[0];
#if PY_VERSION_HEX < 0x030C0000
        if (PyUnicode_READY(c) < 0)
            return NULL;
#endif
        if (PyUnicode_GET_LENGTH(c) == 1) {
            Py_UCS4 code = PyUnicode_READ_CHAR(c, 0);
            if ((Py_ssize_t)code < self->char_limit) {
                char byte = (char)(unsigned char)code;
                int r = out_append(self, &byte, 1, NULL, 0);
                if (r < 0)
                    return NULL;
                if (r)
                    return out_done(self);
            }
        }
    }
    return out_defer(self, str_py_write_char, args, nargs, kwnames);
}

/* write_string and write_line: one exact str appended (with the line end if ``with_eol``),
 * anything else (start/end, a keyword, another type, a codec in Python) to the pure method
 * ``py_name``. */
static PyObject *
out_write_str(Out *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
              int with_eol, PyObject *py_name)
{
    if (nargs == 1 && kwnames == NULL && PyUnicode_CheckExact(args[0])) {
        int r = out_append_str(self, args[0], with_eol);
        if (r < 0)
            return NULL;
        if (r)
            return out_done(self);
    }
    return out_defer(self, py_name, args, nargs, kwnames);
}

static PyObject *
Out_write_string(Out *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    return out_write_str(self, args, nargs, kwnames, 0, str_py_write_string);
}

static PyObject *
Out_write_line(Out *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    return out_write_str(self, args, nargs, kwnames, 1, str_py_write_line);
}

static PyObject *
Out_write_byte(Out *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs == 1 && kwnames == NULL && PyLong_CheckExact(args[0])) {
        int overflow;
        long v = PyLong_AsLongAndOverflow(args[0], &overflow);
        if (!overflow && !(v == -1 && PyErr_Occurred()) && v >= self->lo && v <= self->hi) {
            char byte = (char)(unsigned char)(v & 0xFF);
            int r = out_append(self, &byte, 1, NULL, 0);
            if (r < 0)
                return NULL;
            if (r)
                return out_done(self);
        }
        if (PyErr_Occurred())
            return NULL;
    }
    return out_defer(self, str_py_write_byte, args, nargs, kwnames);
}

static PyObject *
Out_write_sequence(Out *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs == 1 && kwnames == NULL) {
        int r = out_append_bytes(self, args[0]);
        if (r < 0)
            return NULL;
        if (r)
            return out_done(self);
    }
    return out_defer(self, str_py_write_sequence, args, nargs, kwnames);
}

static PyObject *
Out_write(Out *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs == 1 && kwnames == NULL) {
        PyObject *o = args[0], *done;
        Py_ssize_t count;
        int r;
        if (PyUnicode_CheckExact(o)) {
            r = out_append_str(self, o, 0);
            count = PyUnicode_GET_LENGTH(o);
        }
        else {
            r = out_append_bytes(self, o);
            count = r > 0 ? Py_SIZE(o) : 0;
        }
        if (r < 0)
            return NULL;
        if (r) {
            done = out_done(self);
            if (done == NULL)
                return NULL;
            Py_DECREF(done);
            return PyLong_FromSsize_t(count);
        }
    }
    return out_defer(self, str_py_write, args, nargs, kwnames);
}

static PyObject *
Out_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    Out *self = (Out *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->buf = PyByteArray_FromStringAndSize(NULL, 0);
    self->eol = PyBytes_FromStringAndSize("\n", 1);
    if (self->buf == NULL || self->eol == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->kind = -1; /* until the stream sets it: every str goes to the pure method */
    self->hi = -1;
    return (PyObject *)self;
}

static int
Out_traverse(Out *self, visitproc visit, void *arg)
{
    Py_VISIT(self->buf);
    Py_VISIT(self->enc);
    Py_VISIT(self->eol);
    Py_VISIT(self->owner);
    return 0;
}

static int
Out_clear(Out *self)
{
    Py_CLEAR(self->buf);
    Py_CLEAR(self->enc);
    Py_CLEAR(self->eol);
    Py_CLEAR(self->owner);
    return 0;
}

static void
Out_dealloc(Out *self)
{
    PyObject_GC_UnTrack(self);
    Out_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

#define OBJ(name, field) {name, SS_T_OBJECT_EX, offsetof(Out, field), 0, NULL}
#define SSZ(name, field) {name, SS_T_PYSSIZET, offsetof(Out, field), 0, NULL}
static PyMemberDef Out_members[] = {
    OBJ("buf", buf),
    OBJ("enc", enc),
    OBJ("eol", eol),
    OBJ("_owner", owner),
    SSZ("kind", kind),
    SSZ("char_limit", char_limit),
    SSZ("lo", lo),
    SSZ("hi", hi),
    {NULL},
};
#undef OBJ
#undef SSZ

#define FK (METH_FASTCALL | METH_KEYWORDS)
static PyMethodDef Out_methods[] = {
    {"write_char", (PyCFunction)(void (*)(void))Out_write_char, FK,
     "SocketStream.write_char: a character below char_limit appended, else the pure method."},
    {"write_string", (PyCFunction)(void (*)(void))Out_write_string, FK,
     "SocketStream.write_string: a whole str encoded and appended, else the pure method."},
    {"write_line", (PyCFunction)(void (*)(void))Out_write_line, FK,
     "SocketStream.write_line: a str and eol appended, else the pure method."},
    {"write_byte", (PyCFunction)(void (*)(void))Out_write_byte, FK,
     "SocketStream.write_byte: an int in lo..hi appended, else the pure method."},
    {"write_sequence", (PyCFunction)(void (*)(void))Out_write_sequence, FK,
     "SocketStream.write_sequence: whole bytes or bytearray appended, else the pure method."},
    {"write", (PyCFunction)(void (*)(void))Out_write, FK,
     "SocketStream.write: a str, bytes or bytearray appended (its length), else the pure method."},
    {NULL},
};
#undef FK

static PyTypeObject OutType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sockstream._speedups.OutputBufferBase",
    .tp_basicsize = sizeof(Out),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The state of an output buffer in C, and its hot writing verbs (sockstream._impl).",
    .tp_new = Out_new,
    .tp_dealloc = (destructor)Out_dealloc,
    .tp_traverse = (traverseproc)Out_traverse,
    .tp_clear = (inquiry)Out_clear,
    .tp_methods = Out_methods,
    .tp_members = Out_members,
};

/* Called once by PyInit__speedups: the type and its names. */
static int
out_init(PyObject *m)
{
    if (PyType_Ready(&OutType) < 0)
        return -1;
#define INTERN(var, s) \
    if ((var = PyUnicode_InternFromString(s)) == NULL) \
        return -1;
    INTERN(str_full, "_full");
    INTERN(str_py_write_char, "_py_write_char");
    INTERN(str_py_write_string, "_py_write_string");
    INTERN(str_py_write_line, "_py_write_line");
    INTERN(str_py_write_byte, "_py_write_byte");
    INTERN(str_py_write_sequence, "_py_write_sequence");
    INTERN(str_py_write, "_py_write");
#undef INTERN
    Py_INCREF(&OutType);
    if (PyModule_AddObject(m, "OutputBufferBase", (PyObject *)&OutType) < 0) {
        Py_DECREF(&OutType);
        return -1;
    }
    return 0;
}

/* ==== end of the output buffer ============================================================= */

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "sockstream._speedups",
    .m_doc = "The compiled twin of sockstream's input buffer (see docs/accel.md).",
    .m_size = -1,
};

/* ---- same_list: the warm-call check of wait_for_input_streams (issue 16) -------------------
 *
 * ``a == b``, answered by one memcmp of the item arrays when two lists hold the same objects in
 * the same order (list comparison's own identity rule makes them equal), which is what a warm
 * call meets; anything else is left to ``==`` itself, so the result is always ``a == b``.  The
 * pure twin is ``operator.eq`` (sockstream._multiwait). */

static PyObject *
same_list(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *a, *b;
    Py_ssize_t n;
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "same_list() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    a = args[0];
    b = args[1];
    if (PyList_CheckExact(a) && PyList_CheckExact(b)) {
        n = PyList_GET_SIZE(a);
        if (n != PyList_GET_SIZE(b))
            Py_RETURN_FALSE;
        if (a == b || n == 0
            || memcmp(((PyListObject *)a)->ob_item, ((PyListObject *)b)->ob_item,
                      (size_t)n * sizeof(PyObject *)) == 0)
            Py_RETURN_TRUE;
    }
    return PyObject_RichCompare(a, b, Py_EQ);
}

static PyMethodDef speedups_functions[] = {
    {"same_list", (PyCFunction)(void (*)(void))same_list, METH_FASTCALL,
     "same_list(a, b): a == b, by a memcmp of two lists' items when they are the same objects."},
    {NULL},
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    PyObject *m;
    if (PyType_Ready(&BufType) < 0 || PyType_Ready(&StreamType) < 0)
        return NULL;
#define INTERN(var, s) \
    if ((var = PyUnicode_InternFromString(s)) == NULL) \
        return NULL;
    INTERN(str_settle, "settle");
    INTERN(str_take_line, "_take_line");
    INTERN(str_take_until, "_take_until");
    INTERN(str_maybe_take_line, "maybe_take_line");
    INTERN(str_py_maybe_take_line, "_py_maybe_take_line");
    INTERN(str_py_maybe_take_char, "_py_maybe_take_char");
    INTERN(str_py_peek_char, "_py_peek_char");
    INTERN(str_py_has_char, "_py_has_char");
    INTERN(str_py_read_char, "_py_read_char");
    INTERN(str_py_readline, "_py_readline");
    INTERN(str_py_read_line, "_py_read_line");
    INTERN(str_py_read_sequence, "_py_read_sequence");
    INTERN(str_py_writable, "_py_writable");
    INTERN(str_canonical, "canonical");
    INTERN(str_errors, "errors");
    INTERN(str_kind, "kind");
    INTERN(str_py_unread_char, "_py_unread_char");
    INTERN(str_py_listen, "_py_listen");
    INTERN(str_py_read_until, "_py_read_until");
    INTERN(str_py_next, "_py___next__");
    INTERN(str_py_read, "_py_read");
    INTERN(str_eof_error, "eof_error");
    INTERN(str_eof_value, "eof_value");
    INTERN(str_max_length, "max_length");
#undef INTERN
    /* Small ints are cached singletons: the Python code's ``size is _WHOLE`` is identity. */
    int_minus_one = PyLong_FromLong(-1);
    int_zero = PyLong_FromLong(0);
    str_crlf = PyUnicode_InternFromString("\r\n");
    if (int_minus_one == NULL || int_zero == NULL || str_crlf == NULL)
        return NULL;
    m = PyModule_Create(&speedups_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddFunctions(m, speedups_functions) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&BufType);
    if (PyModule_AddObject(m, "InputBufferBase", (PyObject *)&BufType) < 0) {
        Py_DECREF(&BufType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&StreamType);
    if (PyModule_AddObject(m, "StreamBase", (PyObject *)&StreamType) < 0) {
        Py_DECREF(&StreamType);
        Py_DECREF(m);
        return NULL;
    }
    if (out_init(m) < 0 || PyModule_AddIntConstant(m, "MIN_FREE", MIN_FREE) < 0
        || PyModule_AddIntConstant(m, "SMALL_REST", SMALL_REST) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
