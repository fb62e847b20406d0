// activations.h's rule for one whole group of 64 inputs with AVX-512 (F/BW/VL/DQ),
// the same values as the portable code bit for bit; only called after cpuid
// says the CPU has it. Internal to activations.cc.
#ifndef OTARO_SEFP_KERNELS_ACTIVATIONS_AVX512_H_
#define OTARO_SEFP_KERNELS_ACTIVATIONS_AVX512_H_

#include <cstdint>

namespace otaro::sefp::internal {

void QuantizeGroupAvx512(const float* x, int8_t* q, float* scales, int32_t* offsets);

}  // namespace otaro::sefp::internal

#endif  // OTARO_SEFP_KERNELS_ACTIVATIONS_AVX512_H_
