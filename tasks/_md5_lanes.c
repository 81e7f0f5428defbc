/* Sixteen independent MD5 chains in the sixteen 32-bit lanes of AVX-512 registers.

One MD5 chain cannot go faster than the latency of its steps; sixteen chains over different data
(the part and whole-object hashes of several objects being copied at once) can share each vector
instruction. vpternlogd computes MD5's F, G, H and I in one instruction and vprold rotates, so a
step costs a handful of instructions for all sixteen lanes. The lanes' message words are
gathered from each lane's own buffer. The batching of chains into lanes lives in
tasks/md5_lanes.py; machines without AVX-512 never call compress16 (has_avx512() says so). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define LANES 16

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_LANES 1

#define TARGET __attribute__((target("avx512f")))
/* One step on all lanes: a = b + rotl(a + f(b, c, d) + m + k, s), f a ternary-logic truth table. */
#define STEP(imm, a, b, c, d, i, k, s)                                                            \
    a = _mm512_add_epi32(a, _mm512_add_epi32(_mm512_ternarylogic_epi32(b, c, d, imm),             \
                                             _mm512_add_epi32(m[i], _mm512_set1_epi32((int)(k))))); \
    a = _mm512_add_epi32(_mm512_rol_epi32(a, s), b);
#define F_ 0xCA /* b ? c : d */
#define G_ 0xE4 /* d ? b : c */
#define H_ 0x96 /* b ^ c ^ d */
#define I_ 0x39 /* c ^ (b | ~d) */

TARGET static void lanes_blocks(uint32_t st[4][LANES], const unsigned char *ptr[LANES], const int64_t step[LANES],
                                size_t nblocks) {
    __m512i a = _mm512_loadu_si512(st[0]), b = _mm512_loadu_si512(st[1]);
    __m512i c = _mm512_loadu_si512(st[2]), d = _mm512_loadu_si512(st[3]);
    __m512i lo = _mm512_loadu_si512((const void *)ptr), hi = _mm512_loadu_si512((const void *)(ptr + 8));
    const __m512i slo = _mm512_loadu_si512(step), shi = _mm512_loadu_si512(step + 8);
    for (; nblocks; nblocks--) {
        __m512i m[16];
        for (int i = 0; i < 16; i++) {
            /* Word i of every lane: the lanes' addresses plus 4*i, eight lanes per gather. */
            __m256i l = _mm512_i64gather_epi32(lo, (const void *)(uintptr_t)(4 * i), 1);
            __m256i h = _mm512_i64gather_epi32(hi, (const void *)(uintptr_t)(4 * i), 1);
            m[i] = _mm512_inserti64x4(_mm512_castsi256_si512(l), h, 1);
        }
        __m512i oa = a, ob = b, oc = c, od = d;
        STEP(F_, a, b, c, d, 0, 0xd76aa478, 7)  STEP(F_, d, a, b, c, 1, 0xe8c7b756, 12)
        STEP(F_, c, d, a, b, 2, 0x242070db, 17) STEP(F_, b, c, d, a, 3, 0xc1bdceee, 22)
        STEP(F_, a, b, c, d, 4, 0xf57c0faf, 7)  STEP(F_, d, a, b, c, 5, 0x4787c62a, 12)
        STEP(F_, c, d, a, b, 6, 0xa8304613, 17) STEP(F_, b, c, d, a, 7, 0xfd469501, 22)
        STEP(F_, a, b, c, d, 8, 0x698098d8, 7)  STEP(F_, d, a, b, c, 9, 0x8b44f7af, 12)
        STEP(F_, c, d, a, b, 10, 0xffff5bb1, 17) STEP(F_, b, c, d, a, 11, 0x895cd7be, 22)
        STEP(F_, a, b, c, d, 12, 0x6b901122, 7) STEP(F_, d, a, b, c, 13, 0xfd987193, 12)
        STEP(F_, c, d, a, b, 14, 0xa679438e, 17) STEP(F_, b, c, d, a, 15, 0x49b40821, 22)
        STEP(G_, a, b, c, d, 1, 0xf61e2562, 5)  STEP(G_, d, a, b, c, 6, 0xc040b340, 9)
        STEP(G_, c, d, a, b, 11, 0x265e5a51, 14) STEP(G_, b, c, d, a, 0, 0xe9b6c7aa, 20)
        STEP(G_, a, b, c, d, 5, 0xd62f105d, 5)  STEP(G_, d, a, b, c, 10, 0x02441453, 9)
        STEP(G_, c, d, a, b, 15, 0xd8a1e681, 14) STEP(G_, b, c, d, a, 4, 0xe7d3fbc8, 20)
        STEP(G_, a, b, c, d, 9, 0x21e1cde6, 5)  STEP(G_, d, a, b, c, 14, 0xc33707d6, 9)
        STEP(G_, c, d, a, b, 3, 0xf4d50d87, 14) STEP(G_, b, c, d, a, 8, 0x455a14ed, 20)
        STEP(G_, a, b, c, d, 13, 0xa9e3e905, 5) STEP(G_, d, a, b, c, 2, 0xfcefa3f8, 9)
        STEP(G_, c, d, a, b, 7, 0x676f02d9, 14) STEP(G_, b, c, d, a, 12, 0x8d2a4c8a, 20)
        STEP(H_, a, b, c, d, 5, 0xfffa3942, 4)  STEP(H_, d, a, b, c, 8, 0x8771f681, 11)
        STEP(H_, c, d, a, b, 11, 0x6d9d6122, 16) STEP(H_, b, c, d, a, 14, 0xfde5380c, 23)
        STEP(H_, a, b, c, d, 1, 0xa4beea44, 4)  STEP(H_, d, a, b, c, 4, 0x4bdecfa9, 11)
        STEP(H_, c, d, a, b, 7, 0xf6bb4b60, 16) STEP(H_, b, c, d, a, 10, 0xbebfbc70, 23)
        STEP(H_, a, b, c, d, 13, 0x289b7ec6, 4) STEP(H_, d, a, b, c, 0, 0xeaa127fa, 11)
        STEP(H_, c, d, a, b, 3, 0xd4ef3085, 16) STEP(H_, b, c, d, a, 6, 0x04881d05, 23)
        STEP(H_, a, b, c, d, 9, 0xd9d4d039, 4)  STEP(H_, d, a, b, c, 12, 0xe6db99e5, 11)
        STEP(H_, c, d, a, b, 15, 0x1fa27cf8, 16) STEP(H_, b, c, d, a, 2, 0xc4ac5665, 23)
        STEP(I_, a, b, c, d, 0, 0xf4292244, 6)  STEP(I_, d, a, b, c, 7, 0x432aff97, 10)
        STEP(I_, c, d, a, b, 14, 0xab9423a7, 15) STEP(I_, b, c, d, a, 5, 0xfc93a039, 21)
        STEP(I_, a, b, c, d, 12, 0x655b59c3, 6) STEP(I_, d, a, b, c, 3, 0x8f0ccc92, 10)
        STEP(I_, c, d, a, b, 10, 0xffeff47d, 15) STEP(I_, b, c, d, a, 1, 0x85845dd1, 21)
        STEP(I_, a, b, c, d, 8, 0x6fa87e4f, 6)  STEP(I_, d, a, b, c, 15, 0xfe2ce6e0, 10)
        STEP(I_, c, d, a, b, 6, 0xa3014314, 15) STEP(I_, b, c, d, a, 13, 0x4e0811a1, 21)
        STEP(I_, a, b, c, d, 4, 0xf7537e82, 6)  STEP(I_, d, a, b, c, 11, 0xbd3af235, 10)
        STEP(I_, c, d, a, b, 2, 0x2ad7d2bb, 15) STEP(I_, b, c, d, a, 9, 0xeb86d391, 21)
        a = _mm512_add_epi32(a, oa); b = _mm512_add_epi32(b, ob);
        c = _mm512_add_epi32(c, oc); d = _mm512_add_epi32(d, od);
        lo = _mm512_add_epi64(lo, slo);
        hi = _mm512_add_epi64(hi, shi);
    }
    _mm512_storeu_si512(st[0], a); _mm512_storeu_si512(st[1], b);
    _mm512_storeu_si512(st[2], c); _mm512_storeu_si512(st[3], d);
}

static int cpu_has_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}
#else
#define HAVE_LANES 0
static int cpu_has_avx512(void) { return 0; }
#endif

static inline uint32_t load32(const unsigned char *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

PyDoc_STRVAR(compress16_doc,
"compress16(states, buffers, nblocks)\n--\n\n"
"Advance up to 16 MD5 states (writable 16-byte buffers, little-endian words), state i over the\n"
"first nblocks 64-byte blocks of buffers[i]. Only where has_avx512(); the GIL is released.");

static PyObject *compress16(PyObject *module, PyObject *args) {
    PyObject *states_seq, *buffers_seq;
    Py_ssize_t nblocks;
    if (!PyArg_ParseTuple(args, "OOn:compress16", &states_seq, &buffers_seq, &nblocks)) return NULL;
    if (!cpu_has_avx512()) {
        PyErr_SetString(PyExc_RuntimeError, "compress16 needs AVX-512 (see has_avx512())");
        return NULL;
    }
    PyObject *states = PySequence_Fast(states_seq, "states must be a sequence");
    if (states == NULL) return NULL;
    PyObject *buffers = PySequence_Fast(buffers_seq, "buffers must be a sequence");
    if (buffers == NULL) { Py_DECREF(states); return NULL; }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(states);
    Py_buffer sv[LANES], bv[LANES];
    Py_ssize_t got_s = 0, got_b = 0;
    PyObject *result = NULL;
    if (n < 1 || n > LANES || PySequence_Fast_GET_SIZE(buffers) != n) {
        PyErr_Format(PyExc_ValueError, "compress16 takes 1 to %d states and as many buffers", LANES);
        goto done;
    }
    if (nblocks < 0) {
        PyErr_SetString(PyExc_ValueError, "nblocks must not be negative");
        goto done;
    }
    for (; got_s < n; got_s++) {
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(states, got_s), &sv[got_s], PyBUF_WRITABLE) < 0) goto done;
        if (sv[got_s].len != 16) {
            got_s++;
            PyErr_SetString(PyExc_ValueError, "an MD5 state is 16 bytes");
            goto done;
        }
    }
    for (; got_b < n; got_b++) {
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(buffers, got_b), &bv[got_b], PyBUF_SIMPLE) < 0) goto done;
        if (bv[got_b].len < nblocks * 64) {
            got_b++;
            PyErr_Format(PyExc_ValueError, "buffer %zd holds %zd bytes, fewer than %zd blocks", got_b - 1,
                         bv[got_b - 1].len, nblocks);
            goto done;
        }
    }
#if HAVE_LANES
    {
        static const unsigned char idle[64];
        uint32_t st[4][LANES] = {{0}};
        const unsigned char *ptr[LANES];
        int64_t step[LANES];
        for (int i = 0; i < LANES; i++) {
            ptr[i] = i < n ? (const unsigned char *)bv[i].buf : idle; /* an idle lane rereads one block */
            step[i] = i < n ? 64 : 0;
            for (int w = 0; w < 4 && i < n; w++) st[w][i] = load32((const unsigned char *)sv[i].buf + 4 * w);
        }
        Py_BEGIN_ALLOW_THREADS
        lanes_blocks(st, ptr, step, (size_t)nblocks);
        Py_END_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < n; i++)
            for (int w = 0; w < 4; w++) memcpy((unsigned char *)sv[i].buf + 4 * w, &st[w][i], 4);
    }
#endif
    result = Py_NewRef(Py_None);
done:
    for (Py_ssize_t i = 0; i < got_s; i++) PyBuffer_Release(&sv[i]);
    for (Py_ssize_t i = 0; i < got_b; i++) PyBuffer_Release(&bv[i]);
    Py_DECREF(states);
    Py_DECREF(buffers);
    return result;
}

static PyObject *has_avx512(PyObject *module, PyObject *unused) { return PyBool_FromLong(HAVE_LANES && cpu_has_avx512()); }

static PyMethodDef methods[] = {
    {"compress16", compress16, METH_VARARGS, compress16_doc},
    {"has_avx512", has_avx512, METH_NOARGS, "Whether compress16 can run on this CPU."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_md5_lanes", NULL, 0, methods};

PyMODINIT_FUNC PyInit__md5_lanes(void) { return PyModule_Create(&module); }
