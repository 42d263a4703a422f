/* The kernels of a .c file are written once, in its *_impl.h, over REAL (a floating type) and
   SFX(name) (the name with the type's suffix); the .c file defines IMPL (that header's name) and
   includes this file, which includes IMPL for float (name_f32) and for double (name_f64), with the
   <math.h> functions the kernels call given per type (exp_f32 / exp_f64, ...). gru_scan.c, whose
   kernels also take a vector type, instantiates its own. */

#ifndef CTR_PER_TYPE_MATH
#define CTR_PER_TYPE_MATH
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
static inline float exp_f32(float x) { return expf(x); }
static inline double exp_f64(double x) { return exp(x); }
static inline float log1p_f32(float x) { return log1pf(x); }
static inline double log1p_f64(double x) { return log1p(x); }
static inline float sqrt_f32(float x) { return sqrtf(x); }
static inline double sqrt_f64(double x) { return sqrt(x); }
static inline float fma_f32(float x, float y, float z) { return fmaf(x, y, z); }
static inline double fma_f64(double x, double y, double z) { return fma(x, y, z); }
#endif

#define REAL float
#define SFX(name) name##_f32
#include IMPL
#undef REAL
#undef SFX

#define REAL double
#define SFX(name) name##_f64
#include IMPL
#undef REAL
#undef SFX
