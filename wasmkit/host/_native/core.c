/* wasmkit's native host core: the crossings between Python and the guest.
 *
 * Built by wasmkit/host/native.py (cc, the running Python's headers) into the
 * kit cache and imported as ``_wasmkit_core``. It does not link against
 * libwasmtime: the addresses of the few wasmtime C API functions it calls are
 * handed over by ``bind()`` from the library the ``wasmtime`` wheel loaded,
 * so the engine is exactly the one wasmtime-py runs.
 *
 * What it holds, per VM (``Core``): the store's context, the guest memory
 * once known, and the wall-clock deadline of the running call. It provides:
 *   - ``Export``: one guest export, called with the unchecked C API (the GIL
 *     released while the guest runs, as ctypes does);
 *   - ``Core.host_func``: a host import whose trampoline is C: it takes the
 *     GIL, checks the deadline, binds the memory on first use, converts the
 *     arguments and calls the Python function (vectorcall);
 *   - ``Memory``: bounds-checked reads and writes of guest memory and the
 *     copy-out through the guest allocator, the API of host/memory.py's
 *     GuestMemory;
 *   - ``encode_pairs`` / ``pairs_size``: the serialized header map.
 * The semantics are those of the pure-Python reference (host/vm.py,
 * host/memory.py, abi/pairs.py); the test suite runs on both.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

typedef union {
    int32_t i32;
    int64_t i64;
    float f32;
    double f64;
    uint8_t v128[16];
    uint32_t anyref;
    uint32_t externref;
    void *funcref;
} raw_t;

typedef struct {
    uint64_t store_id;
    void *priv;
} func_t;

typedef struct {
    struct {
        uint64_t store_id;
        uint32_t p1;
    } a;
    uint32_t p2;
} memory_t;

typedef void *(*call_unchecked_fn)(void *, const func_t *, raw_t *, size_t, void **);
typedef void *(*callback_fn)(void *, void *, raw_t *, size_t);
typedef void (*new_unchecked_fn)(void *, const void *, callback_fn, void *,
                                 void (*)(void *), func_t *);
typedef uint8_t *(*mem_data_fn)(void *, const memory_t *);
typedef size_t (*mem_size_fn)(void *, const memory_t *);
typedef void *(*trap_new_fn)(const char *, size_t);
typedef void (*set_epoch_fn)(void *, uint64_t);

static call_unchecked_fn api_call;
static new_unchecked_fn api_new;
static mem_data_fn api_mem_data;
static mem_size_fn api_mem_size;
static trap_new_fn api_trap_new;
static set_epoch_fn api_set_epoch;

#define MAX_SLOTS 32
#define NEVER INT64_MAX

static PyObject *CallFailed;
static PyTypeObject ExportType;

static inline int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int64_t thread_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ------------------------------------------------------------------ Core -- */

typedef struct {
    PyObject_HEAD
    void *ctx;
    memory_t mem;
    int has_mem;
    long long deadline_ns;
    long long cpu_deadline_ns;
    long long limit_ns;   /* time per call, -1: none */
    unsigned long long ticks; /* epoch ticks per call */
    int arms;             /* whether a call from depth 0 arms the deadlines */
    int depth;            /* calls into the guest under way */
    PyObject *overdue;        /* () -> None, raises to stop the call */
    PyObject *bind_memory;    /* (caller address) -> None */
    PyObject *raise_in_guest; /* (exception) -> trap address */
    PyObject *funcs;          /* the host functions, kept alive here */
} Core;

static int Core_traverse(Core *self, visitproc visit, void *arg)
{
    Py_VISIT(self->overdue);
    Py_VISIT(self->bind_memory);
    Py_VISIT(self->raise_in_guest);
    Py_VISIT(self->funcs);
    return 0;
}

static int Core_clear(Core *self)
{
    Py_CLEAR(self->overdue);
    Py_CLEAR(self->bind_memory);
    Py_CLEAR(self->raise_in_guest);
    Py_CLEAR(self->funcs);
    return 0;
}

static void Core_dealloc(Core *self)
{
    PyObject_GC_UnTrack(self);
    Core_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Core_init(Core *self, PyObject *args, PyObject *kw)
{
    unsigned long long ctx;
    PyObject *overdue, *bind_memory, *raise_in_guest;
    static char *names[] = {"ctx", "overdue", "bind_memory", "raise_in_guest", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "KOOO", names, &ctx, &overdue,
                                     &bind_memory, &raise_in_guest))
        return -1;
    if (!api_call) {
        PyErr_SetString(PyExc_RuntimeError, "_wasmkit_core.bind() was not called");
        return -1;
    }
    self->ctx = (void *)(uintptr_t)ctx;
    self->has_mem = 0;
    self->deadline_ns = NEVER;
    self->cpu_deadline_ns = NEVER;
    self->limit_ns = -1;
    self->ticks = (unsigned long long)1 << 62;
    self->arms = 0;
    self->depth = 0;
    Py_XSETREF(self->overdue, Py_NewRef(overdue));
    Py_XSETREF(self->bind_memory, Py_NewRef(bind_memory));
    Py_XSETREF(self->raise_in_guest, Py_NewRef(raise_in_guest));
    Py_XSETREF(self->funcs, PyList_New(0));
    return self->funcs ? 0 : -1;
}

static PyObject *Core_set_memory(Core *self, PyObject *arg)
{
    Py_buffer view;
    if (arg == Py_None) {
        self->has_mem = 0;
        Py_RETURN_NONE;
    }
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    if ((size_t)view.len != sizeof(memory_t)) {
        PyBuffer_Release(&view);
        PyErr_Format(PyExc_ValueError, "a wasmtime_memory_t has %zu bytes, not %zd",
                     sizeof(memory_t), view.len);
        return NULL;
    }
    memcpy(&self->mem, view.buf, sizeof(memory_t));
    PyBuffer_Release(&view);
    self->has_mem = 1;
    Py_RETURN_NONE;
}

static inline void region(Core *c, uint8_t **base, size_t *size)
{
    if (!c->has_mem) {
        *base = NULL;
        *size = 0;
        return;
    }
    *size = api_mem_size(c->ctx, &c->mem);
    *base = api_mem_data(c->ctx, &c->mem);
}

static PyObject *Core_region(Core *self, PyObject *unused)
{
    uint8_t *base;
    size_t size;
    region(self, &base, &size);
    return Py_BuildValue("(KK)", (unsigned long long)(uintptr_t)base,
                         (unsigned long long)size);
}

/* A host import: the trampoline wasmtime calls with the raw arguments. The
 * store owns it and holds no Python reference (the garbage collector cannot
 * see into a store): the function is kept alive by its Core's list, and the
 * Core by the VM that owns the store, so neither is gone while the guest can
 * still call. */
typedef struct {
    Core *core;
    PyObject *fn;
    int nparams;
    int has_result;
    uint8_t is64[MAX_SLOTS];
} HostEnv;

static void *trap_from_exception(Core *c)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb && value)
        PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    if (!value)
        value = Py_NewRef(Py_None);
    PyObject *r = PyObject_CallOneArg(c->raise_in_guest, value);
    Py_DECREF(value);
    void *trap = NULL;
    if (r) {
        trap = PyLong_AsVoidPtr(r);
        Py_DECREF(r);
    }
    if (!trap) {
        PyErr_Clear();
        static const char msg[] = "host: wasmkit could not report a host error";
        trap = api_trap_new(msg, sizeof msg - 1);
    }
    return trap;
}

static void *trampoline(void *env, void *caller, raw_t *a, size_t n)
{
    HostEnv *e = (HostEnv *)env;
    Core *c = e->core;
    PyGILState_STATE gil = PyGILState_Ensure();
    void *trap = NULL;
    PyObject *args[MAX_SLOTS];
    int made = 0;
    PyObject *r;
    (void)n;
    if (now_ns() > c->deadline_ns) {
        r = PyObject_CallNoArgs(c->overdue);
        if (!r)
            goto fail;
        Py_DECREF(r);
    }
    if (!c->has_mem) {
        PyObject *where = PyLong_FromVoidPtr(caller);
        if (!where)
            goto fail;
        r = PyObject_CallOneArg(c->bind_memory, where);
        Py_DECREF(where);
        if (!r)
            goto fail;
        Py_DECREF(r);
    }
    for (; made < e->nparams; made++) {
        args[made] = e->is64[made] ? PyLong_FromLongLong(a[made].i64)
                                   : PyLong_FromUnsignedLong((uint32_t)a[made].i32);
        if (!args[made])
            goto fail;
    }
    r = PyObject_Vectorcall(e->fn, args, (size_t)e->nparams, NULL);
    for (int i = 0; i < made; i++)
        Py_DECREF(args[i]);
    made = 0;
    if (!r)
        goto fail;
    if (e->has_result) {
        unsigned long v = 0;
        if (r != Py_None) {
            v = PyLong_AsUnsignedLongMask(r);
            if (v == (unsigned long)-1 && PyErr_Occurred()) {
                Py_DECREF(r);
                goto fail;
            }
        }
        a[0].i64 = 0;
        a[0].i32 = (int32_t)(uint32_t)v;
    }
    Py_DECREF(r);
    PyGILState_Release(gil);
    return NULL;
fail:
    for (int i = 0; i < made; i++)
        Py_DECREF(args[i]);
    trap = trap_from_exception(c);
    PyGILState_Release(gil);
    return trap;
}

static void host_env_free(void *env)
{
    PyMem_RawFree(env);
}

/* host_func(functype address, fn, kinds) -> (store_id, private): kinds is one
 * byte per parameter (1: i64, 0: i32) and a last one (1: has a result). */
static PyObject *Core_host_func(Core *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "host_func(functype, fn, kinds)");
        return NULL;
    }
    void *ty = PyLong_AsVoidPtr(args[0]);
    if (!ty && PyErr_Occurred())
        return NULL;
    if (!PyCallable_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "host_func: fn is not callable");
        return NULL;
    }
    char *kinds;
    Py_ssize_t nk;
    if (PyBytes_AsStringAndSize(args[2], &kinds, &nk) < 0)
        return NULL;
    if (nk < 1 || nk - 1 > MAX_SLOTS) {
        PyErr_SetString(PyExc_ValueError, "host_func: too many parameters");
        return NULL;
    }
    if (!self->funcs || PyList_Append(self->funcs, args[1]) < 0)
        return NULL;
    HostEnv *e = PyMem_RawCalloc(1, sizeof(HostEnv));
    if (!e)
        return PyErr_NoMemory();
    e->core = self;
    e->fn = args[1];
    e->nparams = (int)(nk - 1);
    for (int i = 0; i < e->nparams; i++)
        e->is64[i] = kinds[i] != 0;
    e->has_result = kinds[nk - 1] != 0;
    func_t out = {0, NULL};
    api_new(self->ctx, ty, trampoline, e, host_env_free, &out);
    return Py_BuildValue("(KK)", (unsigned long long)out.store_id,
                         (unsigned long long)(uintptr_t)out.priv);
}

static PyObject *Core_get_deadline(Core *self, void *unused)
{
    return PyLong_FromLongLong(self->deadline_ns);
}

/* A deadline attribute's new value into *out, clamped to int64 (Python's
 * "never" is 1 << 126). */
static int set_deadline(long long *out, PyObject *value)
{
    if (!value) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete a deadline");
        return -1;
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (v == -1 && PyErr_Occurred())
        return -1;
    *out = overflow > 0 ? NEVER : overflow < 0 ? INT64_MIN : v;
    return 0;
}

static int Core_set_deadline(Core *self, PyObject *value, void *unused)
{
    return set_deadline(&self->deadline_ns, value);
}

static PyObject *Core_get_cpu_deadline(Core *self, void *unused)
{
    return PyLong_FromLongLong(self->cpu_deadline_ns);
}

static int Core_set_cpu_deadline(Core *self, PyObject *value, void *unused)
{
    return set_deadline(&self->cpu_deadline_ns, value);
}

static PyObject *Core_get_depth(Core *self, void *unused)
{
    return PyLong_FromLong(self->depth);
}

static int Core_set_depth(Core *self, PyObject *value, void *unused)
{
    long v = value ? PyLong_AsLong(value) : -1;
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v < 0) {
        PyErr_SetString(PyExc_ValueError, "depth >= 0");
        return -1;
    }
    self->depth = (int)v;
    return 0;
}

static PyObject *Core_get_arms(Core *self, void *unused)
{
    return PyBool_FromLong(self->arms);
}

/* configure(limit_ns | None, ticks): what a call from depth 0 arms. */
static PyObject *Core_configure(Core *self, PyObject *args)
{
    PyObject *limit;
    unsigned long long ticks;
    if (!PyArg_ParseTuple(args, "OK", &limit, &ticks))
        return NULL;
    if (limit == Py_None) {
        self->limit_ns = -1;
    } else {
        self->limit_ns = PyLong_AsLongLong(limit);
        if (self->limit_ns == -1 && PyErr_Occurred())
            return NULL;
        if (self->limit_ns < 0)
            self->limit_ns = 0;
    }
    self->ticks = ticks;
    self->arms = 1;
    Py_RETURN_NONE;
}

static PyObject *Core_get_has_mem(Core *self, void *unused)
{
    return PyBool_FromLong(self->has_mem);
}

static PyObject *Core_export(Core *self, PyObject *args);

static PyMethodDef Core_methods[] = {
    {"export", (PyCFunction)Core_export, METH_VARARGS,
     "export(func bytes, kinds, result) -> Export"},
    {"set_memory", (PyCFunction)Core_set_memory, METH_O,
     "set_memory(raw wasmtime_memory_t bytes | None)"},
    {"region", (PyCFunction)Core_region, METH_NOARGS,
     "(address, size) of the guest memory, (0, 0) without one"},
    {"configure", (PyCFunction)Core_configure, METH_VARARGS,
     "configure(limit_ns | None, ticks): calls from depth 0 arm their deadlines"},
    {"host_func", (PyCFunction)(void (*)(void))Core_host_func, METH_FASTCALL,
     "host_func(functype address, fn, kinds) -> (store_id, private)"},
    {NULL}};

static PyGetSetDef Core_getset[] = {
    {"deadline_ns", (getter)Core_get_deadline, (setter)Core_set_deadline,
     "perf_counter_ns after which a host call stops the running call", NULL},
    {"cpu_deadline_ns", (getter)Core_get_cpu_deadline, (setter)Core_set_cpu_deadline,
     "thread CPU time (ns) past which the running call stops", NULL},
    {"depth", (getter)Core_get_depth, (setter)Core_set_depth,
     "calls into the guest under way", NULL},
    {"arms", (getter)Core_get_arms, NULL, "whether configure() was called", NULL},
    {"has_memory", (getter)Core_get_has_mem, NULL, "whether the memory is known", NULL},
    {NULL}};

static PyTypeObject CoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "_wasmkit_core.Core",
    .tp_basicsize = sizeof(Core),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Core(ctx, overdue, bind_memory, raise_in_guest): one VM's native state",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Core_init,
    .tp_dealloc = (destructor)Core_dealloc,
    .tp_traverse = (traverseproc)Core_traverse,
    .tp_clear = (inquiry)Core_clear,
    .tp_methods = Core_methods,
    .tp_getset = Core_getset,
};

/* ---------------------------------------------------------------- Export -- */

typedef struct {
    PyObject_HEAD
    Core *core;
    func_t func;
    int nparams;
    int slots;
    int result; /* 0: none, 1: i32 (unsigned), 2: i64 */
    uint8_t is64[MAX_SLOTS];
    vectorcallfunc vectorcall;
} Export;

static int Export_traverse(Export *self, visitproc visit, void *arg)
{
    Py_VISIT(self->core);
    return 0;
}

static int Export_clear(Export *self)
{
    Py_CLEAR(self->core);
    return 0;
}

static void Export_dealloc(Export *self)
{
    PyObject_GC_UnTrack(self);
    Export_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Export_vectorcall(Export *self, PyObject *const *args, size_t nargsf,
                                   PyObject *kw)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (kw && PyTuple_GET_SIZE(kw)) {
        PyErr_SetString(PyExc_TypeError, "an export takes no keyword arguments");
        return NULL;
    }
    if (nargs != self->nparams) {
        PyErr_Format(PyExc_TypeError, "expected %d arguments, got %zd", self->nparams,
                     nargs);
        return NULL;
    }
    if (!self->core) {
        PyErr_SetString(PyExc_RuntimeError, "the export's VM is gone");
        return NULL;
    }
    raw_t frame[MAX_SLOTS];
    for (Py_ssize_t i = 0; i < nargs; i++) {
        unsigned long long v = PyLong_AsUnsignedLongLongMask(args[i]);
        if (v == (unsigned long long)-1 && PyErr_Occurred())
            return NULL;
        frame[i].i64 = 0;
        if (self->is64[i])
            frame[i].i64 = (int64_t)v;
        else
            frame[i].i32 = (int32_t)(uint32_t)v;
    }
    void *trap = NULL;
    void *error;
    Core *c = self->core;
    if (c->depth == 0 && c->arms) {
        if (c->limit_ns >= 0) {
            c->deadline_ns = now_ns() + c->limit_ns;
            c->cpu_deadline_ns = thread_ns() + c->limit_ns;
        } else {
            c->deadline_ns = c->cpu_deadline_ns = NEVER;
        }
        api_set_epoch(c->ctx, (uint64_t)c->ticks);
    }
    c->depth++;
    Py_BEGIN_ALLOW_THREADS
    error = api_call(c->ctx, &self->func, frame, (size_t)self->slots, &trap);
    Py_END_ALLOW_THREADS
    c->depth--;
    if (error || trap) {
        PyObject *info = Py_BuildValue("(KK)", (unsigned long long)(uintptr_t)error,
                                       (unsigned long long)(uintptr_t)trap);
        if (info) {
            PyErr_SetObject(CallFailed, info);
            Py_DECREF(info);
        }
        return NULL;
    }
    switch (self->result) {
    case 1:
        return PyLong_FromUnsignedLong((uint32_t)frame[0].i32);
    case 2:
        return PyLong_FromLongLong(frame[0].i64);
    default:
        Py_RETURN_NONE;
    }
}

/* Core.export(func bytes, kinds, result) -> Export */
static PyObject *Core_export(Core *self, PyObject *args)
{
    Py_buffer func;
    const char *kinds;
    Py_ssize_t nk;
    int result;
    if (!PyArg_ParseTuple(args, "y*y#i", &func, &kinds, &nk, &result))
        return NULL;
    if ((size_t)func.len != sizeof(func_t) || nk > MAX_SLOTS) {
        PyBuffer_Release(&func);
        PyErr_SetString(PyExc_ValueError, "export: bad wasmtime_func_t or arity");
        return NULL;
    }
    Export *e = PyObject_GC_New(Export, &ExportType);
    if (!e) {
        PyBuffer_Release(&func);
        return NULL;
    }
    memcpy(&e->func, func.buf, sizeof(func_t));
    PyBuffer_Release(&func);
    e->core = (Core *)Py_NewRef((PyObject *)self);
    e->nparams = (int)nk;
    for (int i = 0; i < nk; i++)
        e->is64[i] = kinds[i] != 0;
    e->result = result;
    e->slots = nk > 1 ? (int)nk : 1;
    e->vectorcall = (vectorcallfunc)Export_vectorcall;
    PyObject_GC_Track(e);
    return (PyObject *)e;
}

static PyTypeObject ExportType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "_wasmkit_core.Export",
    .tp_basicsize = sizeof(Export),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "A guest export, called as export(*args) on the unchecked C API",
    .tp_dealloc = (destructor)Export_dealloc,
    .tp_traverse = (traverseproc)Export_traverse,
    .tp_clear = (inquiry)Export_clear,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Export, vectorcall),
};

/* ---------------------------------------------------------------- Memory -- */

typedef struct {
    PyObject_HEAD
    Core *core; /* NULL before a VM is bound */
    PyObject *allocate;
} Memory;

static int Memory_traverse(Memory *self, visitproc visit, void *arg)
{
    Py_VISIT(self->core);
    Py_VISIT(self->allocate);
    return 0;
}

static int Memory_clear(Memory *self)
{
    Py_CLEAR(self->core);
    Py_CLEAR(self->allocate);
    return 0;
}

static void Memory_dealloc(Memory *self)
{
    PyObject_GC_UnTrack(self);
    Memory_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Memory_init(Memory *self, PyObject *args, PyObject *kw)
{
    PyObject *allocate;
    static char *names[] = {"allocate", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O", names, &allocate))
        return -1;
    Py_XSETREF(self->allocate, Py_NewRef(allocate));
    Py_CLEAR(self->core);
    return 0;
}

static PyObject *Memory_bind(Memory *self, PyObject *core)
{
    if (core == Py_None) {
        Py_CLEAR(self->core);
        Py_RETURN_NONE;
    }
    if (!PyObject_TypeCheck(core, &CoreType)) {
        PyErr_SetString(PyExc_TypeError, "Memory.bind(Core | None)");
        return NULL;
    }
    Py_XSETREF(self->core, (Core *)Py_NewRef(core));
    Py_RETURN_NONE;
}

/* The address of [ptr, ptr + size) in guest memory, or NULL if out of range. */
static inline uint8_t *at(Memory *m, long long ptr, long long size)
{
    uint8_t *base;
    size_t limit;
    if (ptr < 0 || size < 0 || !m->core)
        return NULL;
    region(m->core, &base, &limit);
    if ((unsigned long long)ptr + (unsigned long long)size > limit || !base)
        return NULL;
    return base + ptr;
}

static int two_ints(PyObject *const *args, Py_ssize_t nargs, long long *a, long long *b,
                    const char *what)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "%s takes 2 arguments", what);
        return -1;
    }
    *a = PyLong_AsLongLong(args[0]);
    if (*a == -1 && PyErr_Occurred())
        return -1;
    *b = PyLong_AsLongLong(args[1]);
    if (*b == -1 && PyErr_Occurred())
        return -1;
    return 0;
}

static PyObject *Memory_read(Memory *self, PyObject *const *args, Py_ssize_t nargs)
{
    long long ptr, size;
    if (two_ints(args, nargs, &ptr, &size, "read") < 0)
        return NULL;
    if (size == 0)
        return PyBytes_FromStringAndSize("", 0);
    uint8_t *p = at(self, ptr, size);
    if (!p)
        Py_RETURN_NONE;
    return PyBytes_FromStringAndSize((const char *)p, (Py_ssize_t)size);
}

static PyObject *Memory_read_u32(Memory *self, PyObject *arg)
{
    long long ptr = PyLong_AsLongLong(arg);
    if (ptr == -1 && PyErr_Occurred())
        return NULL;
    uint8_t *p = at(self, ptr, 4);
    if (!p)
        Py_RETURN_NONE;
    uint32_t v;
    memcpy(&v, p, 4);
    return PyLong_FromUnsignedLong(v);
}

static PyObject *Memory_writable(Memory *self, PyObject *const *args, Py_ssize_t nargs)
{
    long long ptr, size;
    if (two_ints(args, nargs, &ptr, &size, "writable") < 0)
        return NULL;
    uint8_t *base;
    size_t limit = 0;
    if (self->core)
        region(self->core, &base, &limit);
    return PyBool_FromLong(ptr >= 0 && ptr + size <= (long long)limit);
}

static int write_bytes(Memory *self, long long ptr, PyObject *data)
{
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
        return -1;
    int ok = 1;
    if (view.len) {
        uint8_t *p = at(self, ptr, view.len);
        if (p)
            memmove(p, view.buf, (size_t)view.len);
        else
            ok = 0;
    }
    PyBuffer_Release(&view);
    return ok;
}

static PyObject *Memory_write(Memory *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "write(ptr, data)");
        return NULL;
    }
    long long ptr = PyLong_AsLongLong(args[0]);
    if (ptr == -1 && PyErr_Occurred())
        return NULL;
    int ok = write_bytes(self, ptr, args[1]);
    if (ok < 0)
        return NULL;
    return PyBool_FromLong(ok);
}

static PyObject *write_int(Memory *self, PyObject *const *args, Py_ssize_t nargs, int n)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "write_u32/u64(ptr, value)");
        return NULL;
    }
    long long ptr = PyLong_AsLongLong(args[0]);
    if (ptr == -1 && PyErr_Occurred())
        return NULL;
    unsigned long long v = PyLong_AsUnsignedLongLongMask(args[1]);
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    uint8_t *p = at(self, ptr, n);
    if (!p)
        Py_RETURN_FALSE;
    if (n == 4) {
        uint32_t w = (uint32_t)v;
        memcpy(p, &w, 4);
    } else {
        uint64_t w = (uint64_t)v;
        memcpy(p, &w, 8);
    }
    Py_RETURN_TRUE;
}

static PyObject *Memory_write_u32(Memory *self, PyObject *const *args, Py_ssize_t n)
{
    return write_int(self, args, n, 4);
}

static PyObject *Memory_write_u64(Memory *self, PyObject *const *args, Py_ssize_t n)
{
    return write_int(self, args, n, 8);
}

static void put_u32(Memory *self, long long ptr, uint32_t v)
{
    uint8_t *p = at(self, ptr, 4);
    if (p)
        memcpy(p, &v, 4);
}

/* GuestMemory.copy_out: 1 done, 0 refused (a pointer out of range, the
 * allocator failed), -1 with an exception set. */
static int copy_out(Memory *self, PyObject *data, long long ret_ptr, int has_size,
                    long long ret_size)
{
    if (!at(self, ret_ptr, 4) || (has_size && !at(self, ret_size, 4)))
        return 0;
    Py_ssize_t size = PyObject_Length(data);
    if (size < 0)
        return -1;
    unsigned long addr = 0;
    if (size) {
        PyObject *n = PyLong_FromSsize_t(size);
        if (!n)
            return -1;
        PyObject *r = PyObject_CallOneArg(self->allocate, n);
        Py_DECREF(n);
        if (!r)
            return -1;
        addr = PyLong_AsUnsignedLongMask(r);
        Py_DECREF(r);
        if (addr == (unsigned long)-1 && PyErr_Occurred())
            return -1;
        if (addr == 0)
            return 0;
        int ok = write_bytes(self, (long long)addr, data);
        if (ok <= 0)
            return ok;
    }
    /* The guest ran (its allocator): the out-pointers are checked again. */
    if (!at(self, ret_ptr, 4) || (has_size && !at(self, ret_size, 4)))
        return 0;
    put_u32(self, ret_ptr, (uint32_t)addr);
    if (has_size)
        put_u32(self, ret_size, (uint32_t)size);
    return 1;
}

/* copy_out(data, ret_ptr, ret_size | None) -> bool */
static PyObject *Memory_copy_out(Memory *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "copy_out(data, ret_ptr, ret_size)");
        return NULL;
    }
    long long ret_ptr = PyLong_AsLongLong(args[1]);
    if (ret_ptr == -1 && PyErr_Occurred())
        return NULL;
    int has_size = args[2] != Py_None;
    long long ret_size = 0;
    if (has_size) {
        ret_size = PyLong_AsLongLong(args[2]);
        if (ret_size == -1 && PyErr_Occurred())
            return NULL;
    }
    int ok = copy_out(self, args[0], ret_ptr, has_size, ret_size);
    return ok < 0 ? NULL : PyBool_FromLong(ok);
}

static PyObject *Memory_size(Memory *self, PyObject *unused)
{
    uint8_t *base;
    size_t size = 0;
    if (self->core)
        region(self->core, &base, &size);
    return PyLong_FromSize_t(size);
}

static PyMethodDef Memory_methods[] = {
    {"bind", (PyCFunction)Memory_bind, METH_O, "bind(Core | None)"},
    {"read", (PyCFunction)(void (*)(void))Memory_read, METH_FASTCALL,
     "read(ptr, size) -> bytes | None"},
    {"read_u32", (PyCFunction)Memory_read_u32, METH_O, "read_u32(ptr) -> int | None"},
    {"write", (PyCFunction)(void (*)(void))Memory_write, METH_FASTCALL,
     "write(ptr, data) -> bool"},
    {"write_u32", (PyCFunction)(void (*)(void))Memory_write_u32, METH_FASTCALL,
     "write_u32(ptr, value) -> bool"},
    {"write_u64", (PyCFunction)(void (*)(void))Memory_write_u64, METH_FASTCALL,
     "write_u64(ptr, value) -> bool"},
    {"writable", (PyCFunction)(void (*)(void))Memory_writable, METH_FASTCALL,
     "writable(ptr, size) -> bool"},
    {"copy_out", (PyCFunction)(void (*)(void))Memory_copy_out, METH_FASTCALL,
     "copy_out(data, ret_ptr, ret_size | None) -> bool"},
    {"size", (PyCFunction)Memory_size, METH_NOARGS, "current size (bytes)"},
    {NULL}};

static PyTypeObject MemoryType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "_wasmkit_core.Memory",
    .tp_basicsize = sizeof(Memory),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Memory(allocate): bounds-checked guest memory, as GuestMemory",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Memory_init,
    .tp_dealloc = (destructor)Memory_dealloc,
    .tp_traverse = (traverseproc)Memory_traverse,
    .tp_clear = (inquiry)Memory_clear,
    .tp_methods = Memory_methods,
};

/* ----------------------------------------------------------------- pairs -- */

/* The pairs of a list of (bytes, bytes) tuples: count, total key+value bytes. */
static int pairs_walk(PyObject *items, Py_ssize_t *count, Py_ssize_t *bytes)
{
    Py_ssize_t n = PyList_GET_SIZE(items), total = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PyList_GET_ITEM(items, i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2 ||
            !PyBytes_Check(PyTuple_GET_ITEM(pair, 0)) ||
            !PyBytes_Check(PyTuple_GET_ITEM(pair, 1))) {
            PyErr_SetString(PyExc_TypeError, "a header map is a list of (bytes, bytes)");
            return -1;
        }
        total += PyBytes_GET_SIZE(PyTuple_GET_ITEM(pair, 0)) +
                 PyBytes_GET_SIZE(PyTuple_GET_ITEM(pair, 1));
    }
    *count = n;
    *bytes = total;
    return 0;
}

static PyObject *encode_pairs(PyObject *mod, PyObject *items)
{
    if (!PyList_Check(items)) {
        PyErr_SetString(PyExc_TypeError, "encode_pairs(list)");
        return NULL;
    }
    Py_ssize_t n, total;
    if (pairs_walk(items, &n, &total) < 0)
        return NULL;
    Py_ssize_t size = n ? 4 + 8 * n + total + 2 * n : 4;
    PyObject *out = PyBytes_FromStringAndSize(NULL, size);
    if (!out)
        return NULL;
    uint8_t *p = (uint8_t *)PyBytes_AS_STRING(out);
    uint32_t w = (uint32_t)n;
    memcpy(p, &w, 4);
    uint8_t *sizes = p + 4, *data = p + 4 + 8 * n;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PyList_GET_ITEM(items, i);
        for (int j = 0; j < 2; j++) {
            PyObject *part = PyTuple_GET_ITEM(pair, j);
            Py_ssize_t len = PyBytes_GET_SIZE(part);
            w = (uint32_t)len;
            memcpy(sizes, &w, 4);
            sizes += 4;
            memcpy(data, PyBytes_AS_STRING(part), (size_t)len);
            data += len;
            *data++ = 0;
        }
    }
    return out;
}

static PyObject *pairs_size(PyObject *mod, PyObject *items)
{
    if (!PyList_Check(items)) {
        PyErr_SetString(PyExc_TypeError, "pairs_size(list)");
        return NULL;
    }
    Py_ssize_t n, total;
    if (pairs_walk(items, &n, &total) < 0)
        return NULL;
    return PyLong_FromSsize_t(n ? 4 + 8 * n + total + 2 * n : 4);
}

/* ------------------------------------------------------------- host calls -- */

/* The header-map host functions of an HTTP context's own headers (maps 0 and
 * 2), the hot case, in C; every other case (trailers, callout maps, another
 * kind of context, the access-log phase, a call from inside the guest
 * allocator, a quota that might be reached, a missing key under ABI 0.1.0)
 * goes to ``fallback``, the Python implementation (host/imports.py), which
 * therefore decides every answer that is not plainly the common one. */

enum { OP_GET_VALUE, OP_ADD, OP_REPLACE, OP_REMOVE, OP_GET_PAIRS, OP_COUNT };
enum { RES_OK = 0, RES_NOT_FOUND = 1, RES_INVALID_MEMORY_ACCESS = 6 };
static const int op_arity[OP_COUNT] = {5, 5, 5, 3, 3};

static PyObject *s_allocating, *s_effective, *s_stack, *s_request, *s_response,
    *s_headers, *s_in_log, *s_out, *s_abi_version, *s_limits, *s_header_map_pairs;

typedef struct {
    PyObject_HEAD
    int op;
    PyObject *h;         /* the FilterVm */
    Memory *mem;         /* its native memory */
    PyObject *fallback;  /* the Python host function, same arguments */
    PyObject *http_type; /* HttpContext */
    PyObject *v010;      /* AbiVersion.V0_1_0 */
    vectorcallfunc vectorcall;
} HostCall;

static int HostCall_traverse(HostCall *self, visitproc visit, void *arg)
{
    Py_VISIT(self->h);
    Py_VISIT(self->mem);
    Py_VISIT(self->fallback);
    Py_VISIT(self->http_type);
    Py_VISIT(self->v010);
    return 0;
}

static int HostCall_clear(HostCall *self)
{
    Py_CLEAR(self->h);
    Py_CLEAR(self->mem);
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->http_type);
    Py_CLEAR(self->v010);
    return 0;
}

static void HostCall_dealloc(HostCall *self)
{
    PyObject_GC_UnTrack(self);
    HostCall_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* A new bytes object of guest memory, lowercased (ASCII) if asked; NULL with
 * no exception when out of range. */
static PyObject *guest_bytes(Memory *m, long long ptr, long long size, int lower)
{
    if (size == 0)
        return PyBytes_FromStringAndSize("", 0);
    uint8_t *p = at(m, ptr, size);
    if (!p)
        return NULL;
    PyObject *out = PyBytes_FromStringAndSize((const char *)p, (Py_ssize_t)size);
    if (out && lower) {
        char *c = PyBytes_AS_STRING(out);
        for (long long i = 0; i < size; i++)
            if (c[i] >= 'A' && c[i] <= 'Z')
                c[i] = (char)(c[i] + ('a' - 'A'));
    }
    return out;
}

/* The live header list of map 0 / 2 of the current HTTP context, or NULL
 * (no exception) when the fallback must answer. */
static PyObject *header_list(HostCall *self, long map_type, int writing)
{
    PyObject *ctx = PyObject_GetAttr(self->h, s_effective);
    if (!ctx)
        return NULL;
    if (ctx == Py_None) {
        Py_DECREF(ctx);
        PyObject *stack = PyObject_GetAttr(self->h, s_stack);
        if (!stack)
            return NULL;
        if (!PyList_Check(stack) || PyList_GET_SIZE(stack) == 0) {
            Py_DECREF(stack);
            return NULL;
        }
        ctx = Py_NewRef(PyList_GET_ITEM(stack, PyList_GET_SIZE(stack) - 1));
        Py_DECREF(stack);
    }
    PyObject *items = NULL;
    if ((PyObject *)Py_TYPE(ctx) == self->http_type) {
        int in_log = 0;
        if (writing) {
            PyObject *flag = PyObject_GetAttr(ctx, s_in_log);
            if (!flag) {
                Py_DECREF(ctx);
                return NULL;
            }
            in_log = PyObject_IsTrue(flag);
            Py_DECREF(flag);
        }
        if (in_log == 0) {
            PyObject *side = PyObject_GetAttr(ctx, map_type == 0 ? s_request : s_response);
            if (side) {
                items = PyObject_GetAttr(side, s_headers);
                Py_DECREF(side);
                if (items && !PyList_CheckExact(items))
                    Py_CLEAR(items);
            }
        }
    }
    Py_DECREF(ctx);
    return items;
}

static int quota_plain(HostCall *self, Py_ssize_t count, Py_ssize_t adding)
{
    /* Whether quotas.check_header_map surely passes (else: the fallback). */
    if (adding > 4096 || count % 64 == 0)
        return 0;
    PyObject *limits = PyObject_GetAttr(self->h, s_limits);
    if (!limits)
        return -1;
    PyObject *cap = PyObject_GetAttr(limits, s_header_map_pairs);
    Py_DECREF(limits);
    if (!cap)
        return -1;
    long long most = PyLong_AsLongLong(cap);
    Py_DECREF(cap);
    if (most == -1 && PyErr_Occurred())
        return -1;
    return count <= most;
}

static int insert_field(PyObject *items, PyObject *key, PyObject *value)
{
    PyObject *pair = PyTuple_Pack(2, key, value);
    if (!pair)
        return -1;
    int r;
    if (PyBytes_GET_SIZE(key) > 0 && PyBytes_AS_STRING(key)[0] == ':') {
        Py_ssize_t at_ = 0, n = PyList_GET_SIZE(items);
        while (at_ < n) {
            PyObject *name = PyTuple_GET_ITEM(PyList_GET_ITEM(items, at_), 0);
            if (PyBytes_GET_SIZE(name) == 0 || PyBytes_AS_STRING(name)[0] != ':')
                break;
            at_++;
        }
        r = PyList_Insert(items, at_, pair);
    } else {
        r = PyList_Append(items, pair);
    }
    Py_DECREF(pair);
    return r;
}

/* Removes every field named key; -1 on error. */
static int drop_fields(PyObject *items, PyObject *key)
{
    Py_ssize_t n = PyList_GET_SIZE(items), kept = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PyList_GET_ITEM(items, i);
        PyObject *name = PyTuple_GET_ITEM(pair, 0);
        int same = PyBytes_GET_SIZE(name) == PyBytes_GET_SIZE(key) &&
                   memcmp(PyBytes_AS_STRING(name), PyBytes_AS_STRING(key),
                          (size_t)PyBytes_GET_SIZE(key)) == 0;
        if (!same) {
            if (kept != i) {
                Py_INCREF(pair);
                PyList_SetItem(items, kept, pair);
            }
            kept++;
        }
    }
    return kept < n ? PyList_SetSlice(items, kept, n, NULL) : 0;
}

static int header_pairs_ok(PyObject *items)
{
    /* Every entry a (bytes, bytes) tuple, as the host keeps them. */
    Py_ssize_t n = PyList_GET_SIZE(items);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PyList_GET_ITEM(items, i);
        if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2 ||
            !PyBytes_Check(PyTuple_GET_ITEM(pair, 0)) ||
            !PyBytes_Check(PyTuple_GET_ITEM(pair, 1)))
            return 0;
    }
    return 1;
}

static PyObject *HostCall_vectorcall(HostCall *self, PyObject *const *args, size_t nargsf,
                                     PyObject *kw)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    long long a[5];
    if (kw || nargs != op_arity[self->op])
        goto fallback;
    for (Py_ssize_t i = 0; i < nargs; i++) {
        a[i] = PyLong_AsLongLong(args[i]);
        if (a[i] == -1 && PyErr_Occurred())
            return NULL;
    }
    PyObject *busy = PyObject_GetAttr(self->h, s_allocating);
    if (!busy)
        return NULL;
    int allocating = PyObject_IsTrue(busy);
    Py_DECREF(busy);
    if (allocating != 0 || (a[0] != 0 && a[0] != 2))
        goto fallback;
    Memory *m = self->mem;
    PyObject *key = NULL, *value = NULL, *items = NULL, *result = NULL;
    int writing = self->op == OP_ADD || self->op == OP_REPLACE || self->op == OP_REMOVE;
    if (self->op != OP_GET_PAIRS) {
        key = guest_bytes(m, a[1], a[2], 1);
        if (!key) {
            if (PyErr_Occurred())
                return NULL;
            return PyLong_FromLong(RES_INVALID_MEMORY_ACCESS);
        }
        if (self->op == OP_ADD || self->op == OP_REPLACE) {
            value = guest_bytes(m, a[3], a[4], 0);
            if (!value) {
                Py_DECREF(key);
                if (PyErr_Occurred())
                    return NULL;
                return PyLong_FromLong(RES_INVALID_MEMORY_ACCESS);
            }
        }
    }
    items = header_list(self, (long)a[0], writing);
    if (!items) {
        if (PyErr_Occurred())
            goto error;
        goto cleanup_fallback;
    }
    if (!header_pairs_ok(items))
        goto cleanup_fallback;
    switch (self->op) {
    case OP_GET_VALUE: {
        Py_ssize_t n = PyList_GET_SIZE(items);
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *pair = PyList_GET_ITEM(items, i);
            PyObject *name = PyTuple_GET_ITEM(pair, 0);
            if (PyBytes_GET_SIZE(name) == PyBytes_GET_SIZE(key) &&
                memcmp(PyBytes_AS_STRING(name), PyBytes_AS_STRING(key),
                       (size_t)PyBytes_GET_SIZE(key)) == 0) {
                PyObject *found = Py_NewRef(PyTuple_GET_ITEM(pair, 1));
                if (PyObject_SetAttr(self->h, s_out, found) < 0) {
                    Py_DECREF(found);
                    goto error;
                }
                int ok = copy_out(m, found, a[3], 1, a[4]);
                Py_DECREF(found);
                if (ok < 0)
                    goto error;
                result = PyLong_FromLong(ok ? RES_OK : RES_INVALID_MEMORY_ACCESS);
                goto done;
            }
        }
        /* Missing: NOT_FOUND, unless ABI 0.1.0 (an empty value): fallback. */
        PyObject *abi = PyObject_GetAttr(self->h, s_abi_version);
        if (!abi)
            goto error;
        int old = abi == self->v010;
        Py_DECREF(abi);
        if (old)
            goto cleanup_fallback;
        result = PyLong_FromLong(RES_NOT_FOUND);
        goto done;
    }
    case OP_ADD: {
        Py_ssize_t adding = PyBytes_GET_SIZE(key) + PyBytes_GET_SIZE(value);
        int plain = quota_plain(self, PyList_GET_SIZE(items) + 1, adding);
        if (plain < 0)
            goto error;
        if (!plain)
            goto cleanup_fallback;
        if (insert_field(items, key, value) < 0)
            goto error;
        result = PyLong_FromLong(RES_OK);
        goto done;
    }
    case OP_REPLACE: {
        /* The quota is checked on the list without the field: count it. */
        Py_ssize_t n = PyList_GET_SIZE(items), same = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *name = PyTuple_GET_ITEM(PyList_GET_ITEM(items, i), 0);
            same += PyBytes_GET_SIZE(name) == PyBytes_GET_SIZE(key) &&
                    memcmp(PyBytes_AS_STRING(name), PyBytes_AS_STRING(key),
                           (size_t)PyBytes_GET_SIZE(key)) == 0;
        }
        Py_ssize_t adding = PyBytes_GET_SIZE(key) + PyBytes_GET_SIZE(value);
        int plain = quota_plain(self, n - same + 1, adding);
        if (plain < 0)
            goto error;
        if (!plain)
            goto cleanup_fallback;
        if (drop_fields(items, key) < 0 || insert_field(items, key, value) < 0)
            goto error;
        result = PyLong_FromLong(RES_OK);
        goto done;
    }
    case OP_REMOVE:
        if (drop_fields(items, key) < 0)
            goto error;
        result = PyLong_FromLong(RES_OK);
        goto done;
    case OP_GET_PAIRS: {
        PyObject *data = PyList_GET_SIZE(items) ? encode_pairs(NULL, items)
                                                : PyBytes_FromStringAndSize("", 0);
        if (!data)
            goto error;
        int ok = copy_out(m, data, a[1], 1, a[2]);
        Py_DECREF(data);
        if (ok < 0)
            goto error;
        result = PyLong_FromLong(ok ? RES_OK : RES_INVALID_MEMORY_ACCESS);
        goto done;
    }
    }
cleanup_fallback:
    Py_XDECREF(key);
    Py_XDECREF(value);
    Py_XDECREF(items);
fallback:
    return PyObject_Vectorcall(self->fallback, args, nargsf, kw);
error:
    result = NULL;
done:
    Py_XDECREF(key);
    Py_XDECREF(value);
    Py_XDECREF(items);
    return result;
}

static const char *const op_names[OP_COUNT] = {
    "proxy_get_header_map_value", "proxy_add_header_map_value",
    "proxy_replace_header_map_value", "proxy_remove_header_map_value",
    "proxy_get_header_map_pairs"};

static PyTypeObject HostCallType;

/* host_call(name, h, mem, fallback, http_type, v010) -> HostCall | None */
static PyObject *host_call(PyObject *mod, PyObject *args)
{
    const char *name;
    PyObject *h, *mem, *fallback, *http_type, *v010;
    if (!PyArg_ParseTuple(args, "sOOOOO", &name, &h, &mem, &fallback, &http_type, &v010))
        return NULL;
    int op = -1;
    for (int i = 0; i < OP_COUNT; i++)
        if (strcmp(name, op_names[i]) == 0)
            op = i;
    if (op < 0)
        Py_RETURN_NONE;
    if (!PyObject_TypeCheck(mem, &MemoryType)) {
        PyErr_SetString(PyExc_TypeError, "host_call: mem is not a native Memory");
        return NULL;
    }
    HostCall *c = PyObject_GC_New(HostCall, &HostCallType);
    if (!c)
        return NULL;
    c->op = op;
    c->h = Py_NewRef(h);
    c->mem = (Memory *)Py_NewRef(mem);
    c->fallback = Py_NewRef(fallback);
    c->http_type = Py_NewRef(http_type);
    c->v010 = Py_NewRef(v010);
    c->vectorcall = (vectorcallfunc)HostCall_vectorcall;
    PyObject_GC_Track(c);
    return (PyObject *)c;
}

static PyTypeObject HostCallType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "_wasmkit_core.HostCall",
    .tp_basicsize = sizeof(HostCall),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "A header-map host function in C, with its Python one as fallback",
    .tp_dealloc = (destructor)HostCall_dealloc,
    .tp_traverse = (traverseproc)HostCall_traverse,
    .tp_clear = (inquiry)HostCall_clear,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(HostCall, vectorcall),
};

/* ------------------------------------------------------------------ module -- */

static int take(PyObject *table, const char *name, void **slot)
{
    PyObject *v = PyDict_GetItemString(table, name);
    if (!v) {
        PyErr_Format(PyExc_KeyError, "bind(): no address for %s", name);
        return -1;
    }
    *slot = PyLong_AsVoidPtr(v);
    if (!*slot) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_ValueError, "bind(): %s is at address 0", name);
        return -1;
    }
    return 0;
}

static PyObject *bind(PyObject *mod, PyObject *table)
{
    if (!PyDict_Check(table)) {
        PyErr_SetString(PyExc_TypeError, "bind(dict of name -> address)");
        return NULL;
    }
    void *call, *new_, *data, *size, *trap, *epoch;
    if (take(table, "wasmtime_func_call_unchecked", &call) < 0 ||
        take(table, "wasmtime_func_new_unchecked", &new_) < 0 ||
        take(table, "wasmtime_memory_data", &data) < 0 ||
        take(table, "wasmtime_memory_data_size", &size) < 0 ||
        take(table, "wasmtime_trap_new", &trap) < 0 ||
        take(table, "wasmtime_context_set_epoch_deadline", &epoch) < 0)
        return NULL;
    api_call = (call_unchecked_fn)call;
    api_new = (new_unchecked_fn)new_;
    api_mem_data = (mem_data_fn)data;
    api_mem_size = (mem_size_fn)size;
    api_trap_new = (trap_new_fn)trap;
    api_set_epoch = (set_epoch_fn)epoch;
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"bind", bind, METH_O, "bind({wasmtime C API name: address})"},
    {"encode_pairs", encode_pairs, METH_O, "serialize a list of (bytes, bytes)"},
    {"pairs_size", pairs_size, METH_O, "size of the serialized header map"},
    {"host_call", host_call, METH_VARARGS,
     "host_call(name, h, mem, fallback, http_type, v010) -> HostCall | None"},
    {NULL}};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "_wasmkit_core",
    "wasmkit's native host core (see core.c)", -1, module_methods};

PyMODINIT_FUNC PyInit__wasmkit_core(void)
{
    PyObject *m;
    if (PyType_Ready(&CoreType) < 0 || PyType_Ready(&ExportType) < 0 ||
        PyType_Ready(&MemoryType) < 0 || PyType_Ready(&HostCallType) < 0)
        return NULL;
    const char *names[] = {"allocating", "effective", "_stack", "request", "response",
                           "headers", "in_log", "out", "abi_version", "limits",
                           "header_map_pairs"};
    PyObject **slots[] = {&s_allocating, &s_effective, &s_stack, &s_request, &s_response,
                          &s_headers, &s_in_log, &s_out, &s_abi_version, &s_limits,
                          &s_header_map_pairs};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        *slots[i] = PyUnicode_InternFromString(names[i]);
        if (!*slots[i])
            return NULL;
    }
    m = PyModule_Create(&moduledef);
    if (!m)
        return NULL;
    CallFailed = PyErr_NewException("_wasmkit_core.CallFailed", NULL, NULL);
    if (!CallFailed || PyModule_AddObjectRef(m, "CallFailed", CallFailed) < 0 ||
        PyModule_AddObjectRef(m, "Core", (PyObject *)&CoreType) < 0 ||
        PyModule_AddObjectRef(m, "Export", (PyObject *)&ExportType) < 0 ||
        PyModule_AddObjectRef(m, "Memory", (PyObject *)&MemoryType) < 0 ||
        PyModule_AddIntConstant(m, "MEMORY_T_SIZE", (long)sizeof(memory_t)) < 0 ||
        PyModule_AddIntConstant(m, "FUNC_T_SIZE", (long)sizeof(func_t)) < 0 ||
        PyModule_AddIntConstant(m, "MAX_SLOTS", MAX_SLOTS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
