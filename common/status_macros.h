// Early-return helpers for absl::Status / absl::StatusOr, in the style of
// Abseil-based projects (TensorFlow's TF_RETURN_IF_ERROR, ...).
#ifndef OTARO_COMMON_STATUS_MACROS_H_
#define OTARO_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define OTARO_STATUS_CONCAT_INNER_(a, b) a##b
#define OTARO_STATUS_CONCAT_(a, b) OTARO_STATUS_CONCAT_INNER_(a, b)

// Returns from the current function if `expr` (an absl::Status) is not OK.
#define OTARO_RETURN_IF_ERROR(expr)                  \
  do {                                               \
    ::absl::Status otaro_status_ = (expr);           \
    if (!otaro_status_.ok()) return otaro_status_;   \
  } while (0)

// `lhs` = value of `rexpr` (an absl::StatusOr<T>), or returns its error.
#define OTARO_ASSIGN_OR_RETURN(lhs, rexpr) \
  OTARO_ASSIGN_OR_RETURN_IMPL_(OTARO_STATUS_CONCAT_(otaro_statusor_, __LINE__), lhs, rexpr)

#define OTARO_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                 \
  if (!statusor.ok()) return statusor.status();            \
  lhs = std::move(statusor).value()

#endif  // OTARO_COMMON_STATUS_MACROS_H_
