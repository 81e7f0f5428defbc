/* Two MD5 states advanced over the same 64-byte blocks in one loop, their rounds interleaved.

MD5 is bound by the latency of its single dependency chain (each step needs the previous one), not
by how many instructions a core can issue; two independent chains in one loop let the core run
both in the time of about one. Replication checks every byte it copies twice with MD5: the part
MD5s that must rebuild the source's multipart ETag, and the whole-object MD5 that the
destination's ETag must equal. With this they cost about one pass instead of two. Padding, part
boundaries and the fallback to hashlib live in tasks/twin_md5.py. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define F(x, y, z) ((z) ^ ((x) & ((y) ^ (z))))
#define G(x, y, z) ((y) ^ ((z) & ((x) ^ (y))))
#define H(x, y, z) ((x) ^ (y) ^ (z))
#define I(x, y, z) ((y) ^ ((x) | ~(z)))
#define ROTL(x, s) (((x) << (s)) | ((x) >> (32 - (s))))
/* One MD5 step on one state, and on two: the same message word and constant, each its own chain. */
#define STEP1(f, a, b, c, d, m, k, s) a += f(b, c, d) + (m) + (k); a = ROTL(a, s) + b;
#define STEP2(f, a, b, c, d, m, k, s) STEP1(f, a, b, c, d, m, k, s) STEP1(f, a##2, b##2, c##2, d##2, m, k, s)
/* MD5's 64 steps (RFC 1321), for any STEP(f, a, b, c, d, m, k, s). */
#define MD5_STEPS(STEP) \
    STEP(F, a, b, c, d, m[0], 0xd76aa478, 7)  STEP(F, d, a, b, c, m[1], 0xe8c7b756, 12) \
    STEP(F, c, d, a, b, m[2], 0x242070db, 17) STEP(F, b, c, d, a, m[3], 0xc1bdceee, 22) \
    STEP(F, a, b, c, d, m[4], 0xf57c0faf, 7)  STEP(F, d, a, b, c, m[5], 0x4787c62a, 12) \
    STEP(F, c, d, a, b, m[6], 0xa8304613, 17) STEP(F, b, c, d, a, m[7], 0xfd469501, 22) \
    STEP(F, a, b, c, d, m[8], 0x698098d8, 7)  STEP(F, d, a, b, c, m[9], 0x8b44f7af, 12) \
    STEP(F, c, d, a, b, m[10], 0xffff5bb1, 17) STEP(F, b, c, d, a, m[11], 0x895cd7be, 22) \
    STEP(F, a, b, c, d, m[12], 0x6b901122, 7) STEP(F, d, a, b, c, m[13], 0xfd987193, 12) \
    STEP(F, c, d, a, b, m[14], 0xa679438e, 17) STEP(F, b, c, d, a, m[15], 0x49b40821, 22) \
    STEP(G, a, b, c, d, m[1], 0xf61e2562, 5)  STEP(G, d, a, b, c, m[6], 0xc040b340, 9) \
    STEP(G, c, d, a, b, m[11], 0x265e5a51, 14) STEP(G, b, c, d, a, m[0], 0xe9b6c7aa, 20) \
    STEP(G, a, b, c, d, m[5], 0xd62f105d, 5)  STEP(G, d, a, b, c, m[10], 0x02441453, 9) \
    STEP(G, c, d, a, b, m[15], 0xd8a1e681, 14) STEP(G, b, c, d, a, m[4], 0xe7d3fbc8, 20) \
    STEP(G, a, b, c, d, m[9], 0x21e1cde6, 5)  STEP(G, d, a, b, c, m[14], 0xc33707d6, 9) \
    STEP(G, c, d, a, b, m[3], 0xf4d50d87, 14) STEP(G, b, c, d, a, m[8], 0x455a14ed, 20) \
    STEP(G, a, b, c, d, m[13], 0xa9e3e905, 5) STEP(G, d, a, b, c, m[2], 0xfcefa3f8, 9) \
    STEP(G, c, d, a, b, m[7], 0x676f02d9, 14) STEP(G, b, c, d, a, m[12], 0x8d2a4c8a, 20) \
    STEP(H, a, b, c, d, m[5], 0xfffa3942, 4)  STEP(H, d, a, b, c, m[8], 0x8771f681, 11) \
    STEP(H, c, d, a, b, m[11], 0x6d9d6122, 16) STEP(H, b, c, d, a, m[14], 0xfde5380c, 23) \
    STEP(H, a, b, c, d, m[1], 0xa4beea44, 4)  STEP(H, d, a, b, c, m[4], 0x4bdecfa9, 11) \
    STEP(H, c, d, a, b, m[7], 0xf6bb4b60, 16) STEP(H, b, c, d, a, m[10], 0xbebfbc70, 23) \
    STEP(H, a, b, c, d, m[13], 0x289b7ec6, 4) STEP(H, d, a, b, c, m[0], 0xeaa127fa, 11) \
    STEP(H, c, d, a, b, m[3], 0xd4ef3085, 16) STEP(H, b, c, d, a, m[6], 0x04881d05, 23) \
    STEP(H, a, b, c, d, m[9], 0xd9d4d039, 4)  STEP(H, d, a, b, c, m[12], 0xe6db99e5, 11) \
    STEP(H, c, d, a, b, m[15], 0x1fa27cf8, 16) STEP(H, b, c, d, a, m[2], 0xc4ac5665, 23) \
    STEP(I, a, b, c, d, m[0], 0xf4292244, 6)  STEP(I, d, a, b, c, m[7], 0x432aff97, 10) \
    STEP(I, c, d, a, b, m[14], 0xab9423a7, 15) STEP(I, b, c, d, a, m[5], 0xfc93a039, 21) \
    STEP(I, a, b, c, d, m[12], 0x655b59c3, 6) STEP(I, d, a, b, c, m[3], 0x8f0ccc92, 10) \
    STEP(I, c, d, a, b, m[10], 0xffeff47d, 15) STEP(I, b, c, d, a, m[1], 0x85845dd1, 21) \
    STEP(I, a, b, c, d, m[8], 0x6fa87e4f, 6)  STEP(I, d, a, b, c, m[15], 0xfe2ce6e0, 10) \
    STEP(I, c, d, a, b, m[6], 0xa3014314, 15) STEP(I, b, c, d, a, m[13], 0x4e0811a1, 21) \
    STEP(I, a, b, c, d, m[4], 0xf7537e82, 6)  STEP(I, d, a, b, c, m[11], 0xbd3af235, 10) \
    STEP(I, c, d, a, b, m[2], 0x2ad7d2bb, 15) STEP(I, b, c, d, a, m[9], 0xeb86d391, 21)

/* MD5 reads its message words little-endian; memcpy is a plain load on x86 and safe elsewhere. */
static inline uint32_t load32(const unsigned char *p) {
    uint32_t v;
    memcpy(&v, p, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    return v;
}

static void twin_blocks(uint32_t *s1, uint32_t *s2, const unsigned char *p, size_t nblocks) {
    uint32_t a = s1[0], b = s1[1], c = s1[2], d = s1[3];
    uint32_t a2 = s2[0], b2 = s2[1], c2 = s2[2], d2 = s2[3];
    for (; nblocks; nblocks--, p += 64) {
        uint32_t m[16];
        for (int i = 0; i < 16; i++) m[i] = load32(p + 4 * i);
        uint32_t oa = a, ob = b, oc = c, od = d, oa2 = a2, ob2 = b2, oc2 = c2, od2 = d2;
        MD5_STEPS(STEP2)
        a += oa; b += ob; c += oc; d += od; a2 += oa2; b2 += ob2; c2 += oc2; d2 += od2;
    }
    s1[0] = a; s1[1] = b; s1[2] = c; s1[3] = d;
    s2[0] = a2; s2[1] = b2; s2[2] = c2; s2[3] = d2;
}

static void one_blocks(uint32_t *s1, const unsigned char *p, size_t nblocks) {
    uint32_t a = s1[0], b = s1[1], c = s1[2], d = s1[3];
    for (; nblocks; nblocks--, p += 64) {
        uint32_t m[16];
        for (int i = 0; i < 16; i++) m[i] = load32(p + 4 * i);
        uint32_t oa = a, ob = b, oc = c, od = d;
        MD5_STEPS(STEP1)
        a += oa; b += ob; c += oc; d += od;
    }
    s1[0] = a; s1[1] = b; s1[2] = c; s1[3] = d;
}

static int load_state(Py_buffer *view, uint32_t s[4]) {
    if (view->len != 16) {
        PyErr_SetString(PyExc_ValueError, "an MD5 state is 16 bytes");
        return -1;
    }
    for (int i = 0; i < 4; i++) s[i] = load32((const unsigned char *)view->buf + 4 * i);
    return 0;
}

static void store_state(Py_buffer *view, const uint32_t s[4]) {
    unsigned char *p = view->buf;
    for (int i = 0; i < 4; i++) {
        uint32_t v = s[i];
        p[4 * i] = v & 0xff; p[4 * i + 1] = (v >> 8) & 0xff; p[4 * i + 2] = (v >> 16) & 0xff; p[4 * i + 3] = v >> 24;
    }
}

PyDoc_STRVAR(compress2_doc,
"compress2(state_a, state_b, data)\n--\n\n"
"Advance two MD5 states (writable 16-byte buffers, little-endian words) over the same data,\n"
"a whole number of 64-byte blocks. The GIL is released while it runs.");

static PyObject *compress2(PyObject *module, PyObject *args) {
    Py_buffer a, b, data;
    if (!PyArg_ParseTuple(args, "w*w*y*:compress2", &a, &b, &data)) return NULL;
    PyObject *result = NULL;
    uint32_t sa[4], sb[4];
    if (data.len % 64) {
        PyErr_Format(PyExc_ValueError, "compress2 takes whole 64-byte blocks, got %zd bytes", data.len);
        goto done;
    }
    if (load_state(&a, sa) < 0 || load_state(&b, sb) < 0) goto done;
    Py_BEGIN_ALLOW_THREADS
    twin_blocks(sa, sb, data.buf, (size_t)data.len / 64);
    Py_END_ALLOW_THREADS
    store_state(&a, sa);
    store_state(&b, sb);
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&a);
    PyBuffer_Release(&b);
    PyBuffer_Release(&data);
    return result;
}

PyDoc_STRVAR(compress1_doc,
"compress1(state, data)\n--\n\n"
"Advance one MD5 state over whole 64-byte blocks (a chain with no twin). The GIL is released.");

static PyObject *compress1(PyObject *module, PyObject *args) {
    Py_buffer a, data;
    if (!PyArg_ParseTuple(args, "w*y*:compress1", &a, &data)) return NULL;
    PyObject *result = NULL;
    uint32_t sa[4];
    if (data.len % 64) {
        PyErr_Format(PyExc_ValueError, "compress1 takes whole 64-byte blocks, got %zd bytes", data.len);
        goto done;
    }
    if (load_state(&a, sa) < 0) goto done;
    Py_BEGIN_ALLOW_THREADS
    one_blocks(sa, data.buf, (size_t)data.len / 64);
    Py_END_ALLOW_THREADS
    store_state(&a, sa);
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&a);
    PyBuffer_Release(&data);
    return result;
}

static PyMethodDef methods[] = {
    {"compress1", compress1, METH_VARARGS, compress1_doc},
    {"compress2", compress2, METH_VARARGS, compress2_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_twin_md5", NULL, 0, methods};

PyMODINIT_FUNC PyInit__twin_md5(void) { return PyModule_Create(&module); }
