#include "trainer/cuda/matmul.h"

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <map>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"

namespace otaro::trainer::cuda {
namespace {

absl::Status CublasStatus(cublasStatus_t status, absl::string_view what) {
  if (status == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  const std::string message = absl::StrCat(what, ": ", cublasLtGetStatusName(status), " (",
                                           cublasLtGetStatusString(status), ")");
  if (status == CUBLAS_STATUS_ALLOC_FAILED) return absl::ResourceExhaustedError(message);
  if (status == CUBLAS_STATUS_NOT_INITIALIZED || status == CUBLAS_STATUS_ARCH_MISMATCH) {
    return absl::FailedPreconditionError(message);
  }
  return absl::InternalError(message);
}

// The largest power of two <= 256 that divides the address (what cuBLASLt's
// alignment preferences speak of).
uint32_t AlignmentOf(const void* p) {
  const uintptr_t address = reinterpret_cast<uintptr_t>(p);
  uint32_t alignment = 256;
  while (alignment > 4 && address % alignment != 0) alignment /= 2;
  return alignment;
}

// One problem shape in cuBLASLt's column-major terms (see Matmul::Gemm).
struct Shape {
  bool trans_a, trans_b;
  int64_t m, n, k, lda, ldb, ldc;
  uint32_t align_a, align_b, align_c;
  auto Tie() const {
    return std::tie(trans_a, trans_b, m, n, k, lda, ldb, ldc, align_a, align_b, align_c);
  }
  bool operator<(const Shape& o) const { return Tie() < o.Tie(); }
};

// The descriptors and the algorithm of one shape.
struct Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  size_t workspace = 0;

  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  Plan(Plan&& o) noexcept
      : op(std::exchange(o.op, nullptr)),
        a(std::exchange(o.a, nullptr)),
        b(std::exchange(o.b, nullptr)),
        c(std::exchange(o.c, nullptr)),
        algo(o.algo),
        workspace(o.workspace) {}
  ~Plan() {
    if (c != nullptr) cublasLtMatrixLayoutDestroy(c);
    if (b != nullptr) cublasLtMatrixLayoutDestroy(b);
    if (a != nullptr) cublasLtMatrixLayoutDestroy(a);
    if (op != nullptr) cublasLtMatmulDescDestroy(op);
  }
};

}  // namespace

struct Matmul::Impl {
  DeviceContext* context = nullptr;
  cublasLtHandle_t handle = nullptr;
  DeviceBuffer workspace;
  std::map<Shape, Plan> plans;

  ~Impl() {
    plans.clear();
    if (handle != nullptr) cublasLtDestroy(handle);
  }

  absl::StatusOr<const Plan*> PlanFor(const Shape& s);
};

absl::StatusOr<const Plan*> Matmul::Impl::PlanFor(const Shape& s) {
  auto it = plans.find(s);
  if (it != plans.end()) return &it->second;

  const std::string what =
      absl::StrCat("cuBLASLt plan for a ", s.m, " x ", s.k, " by ", s.k, " x ", s.n, " product");
  Plan plan;
  // Column-major view: C^T [n, m] = op'(B) [n, k] * op'(A) [k, m], where B
  // stored row-major is B^T column-major (see Gemm).
  const cublasOperation_t op_first = s.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_second = s.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  // Each call runs only while the ones before it succeeded; the first failure
  // is reported.
  cublasStatus_t status = cublasLtMatmulDescCreate(&plan.op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
  if (status == CUBLAS_STATUS_SUCCESS) {
    status = cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_TRANSA, &op_first,
                                            sizeof(op_first));
  }
  if (status == CUBLAS_STATUS_SUCCESS) {
    status = cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_TRANSB, &op_second,
                                            sizeof(op_second));
  }
  // Stored shapes (before op'): B row-major [k, n] (or [n, k] transposed) is
  // column-major [n, k] (or [k, n]) with leading dimension ldb; likewise A.
  if (status == CUBLAS_STATUS_SUCCESS) {
    status = cublasLtMatrixLayoutCreate(&plan.a, CUDA_R_32F, s.trans_b ? s.k : s.n,
                                        s.trans_b ? s.n : s.k, s.ldb);
  }
  if (status == CUBLAS_STATUS_SUCCESS) {
    status = cublasLtMatrixLayoutCreate(&plan.b, CUDA_R_32F, s.trans_a ? s.m : s.k,
                                        s.trans_a ? s.k : s.m, s.lda);
  }
  if (status == CUBLAS_STATUS_SUCCESS) {
    status = cublasLtMatrixLayoutCreate(&plan.c, CUDA_R_32F, s.n, s.m, s.ldc);
  }
  cublasLtMatmulPreference_t preference = nullptr;
  if (status == CUBLAS_STATUS_SUCCESS) status = cublasLtMatmulPreferenceCreate(&preference);
  // In cuBLASLt's terms its A is our B and its B our A.
  const uint64_t max_workspace = workspace.bytes();
  const uint32_t alignments[4] = {s.align_b, s.align_a, s.align_c, s.align_c};
  const cublasLtMatmulPreferenceAttributes_t alignment_attributes[4] = {
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
  if (status == CUBLAS_STATUS_SUCCESS) {
    status = cublasLtMatmulPreferenceSetAttribute(
        preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &max_workspace, sizeof(max_workspace));
  }
  for (int i = 0; i < 4 && status == CUBLAS_STATUS_SUCCESS; ++i) {
    status = cublasLtMatmulPreferenceSetAttribute(preference, alignment_attributes[i],
                                                  &alignments[i], sizeof(alignments[i]));
  }
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  if (status == CUBLAS_STATUS_SUCCESS) {
    status = cublasLtMatmulAlgoGetHeuristic(handle, plan.op, plan.a, plan.b, plan.c, plan.c,
                                            preference, 1, &result, &found);
  }
  if (preference != nullptr) cublasLtMatmulPreferenceDestroy(preference);
  if (status != CUBLAS_STATUS_SUCCESS) return CublasStatus(status, what);
  if (found < 1) {
    return absl::InternalError(absl::StrCat(what, ": cuBLASLt has no algorithm for it"));
  }
  plan.algo = result.algo;
  plan.workspace = result.workspaceSize;
  return &plans.emplace(s, std::move(plan)).first->second;
}

Matmul::Matmul(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Matmul::~Matmul() = default;

absl::StatusOr<std::unique_ptr<Matmul>> Matmul::Create(DeviceContext* context,
                                                       size_t workspace_bytes) {
  auto impl = std::make_unique<Impl>();
  impl->context = context;
  if (absl::Status s = context->Activate(); !s.ok()) return s;
  if (absl::Status s = CublasStatus(cublasLtCreate(&impl->handle), "cublasLtCreate"); !s.ok()) {
    return s;
  }
  auto workspace = context->Allocate(workspace_bytes, "the cuBLASLt workspace");
  if (!workspace.ok()) return workspace.status();
  impl->workspace = std::move(*workspace);
  return std::unique_ptr<Matmul>(new Matmul(std::move(impl)));
}

absl::Status Matmul::Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                          float alpha, const float* a, int64_t lda, const float* b, int64_t ldb,
                          float beta, float* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return absl::OkStatus();
  if (k <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("GEMM with an empty inner dimension (", m, " x 0 by 0 x ", n, ")"));
  }
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: cuBLASLt
  // gets B as its first operand and A as its second, and writes C^T [n, m].
  const Shape shape{trans_a, trans_b, m, n, k, lda, ldb, ldc,
                    AlignmentOf(a), AlignmentOf(b), AlignmentOf(c)};
  auto plan = impl_->PlanFor(shape);
  if (!plan.ok()) return plan.status();
  const Plan& p = **plan;
  const cublasStatus_t status =
      cublasLtMatmul(impl_->handle, p.op, &alpha, b, p.a, a, p.b, &beta, c, p.c, c, p.c, &p.algo,
                     impl_->workspace.as<void>(), impl_->workspace.bytes(),
                     impl_->context->stream());
  if (status == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  return CublasStatus(status,
                      absl::StrCat("cublasLtMatmul (", m, " x ", k, " by ", k, " x ", n, ")"));
}

size_t Matmul::cached_plans() const { return impl_->plans.size(); }
size_t Matmul::workspace_bytes() const { return impl_->workspace.bytes(); }

}  // namespace otaro::trainer::cuda
