#include "server/tuning/tuning_service.h"

#include "absl/time/clock.h"
#include "server/service/grpc_status.h"

namespace otaro::server {
namespace {

grpc::Status MissingId() {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "id: required");
}

}  // namespace

static grpc::Status NoStore() {
  return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                      "tuning jobs need a persistent store: start the server with store.dir set");
}

#define OTARO_TUNING_ENTER()                  \
  auto otaro_pass = gate_->TryEnter();        \
  if (!otaro_pass) return CallGate::ShuttingDown(); \
  if (jobs_ == nullptr) return NoStore()

grpc::Status TuningService::CreateTuningJob(grpc::ServerContext*,
                                            const otaro::v1::CreateTuningJobRequest* request,
                                            otaro::v1::TuningJob* response) {
  OTARO_TUNING_ENTER();
  auto job = jobs_->Create(*request);
  if (!job.ok()) return ToGrpcStatus(job.status());
  *response = std::move(*job);
  return grpc::Status::OK;
}

grpc::Status TuningService::GetTuningJob(grpc::ServerContext*,
                                         const otaro::v1::GetTuningJobRequest* request,
                                         otaro::v1::TuningJob* response) {
  OTARO_TUNING_ENTER();
  if (request->id().empty()) return MissingId();
  auto job = jobs_->Get(request->id());
  if (!job.ok()) return ToGrpcStatus(job.status());
  *response = std::move(*job);
  return grpc::Status::OK;
}

grpc::Status TuningService::ListTuningJobs(grpc::ServerContext*,
                                           const otaro::v1::ListTuningJobsRequest* request,
                                           otaro::v1::ListTuningJobsResponse* response) {
  OTARO_TUNING_ENTER();
  auto page = jobs_->List(request->page_size(), request->page_token());
  if (!page.ok()) return ToGrpcStatus(page.status());
  *response = std::move(*page);
  return grpc::Status::OK;
}

grpc::Status TuningService::CancelTuningJob(grpc::ServerContext*,
                                            const otaro::v1::CancelTuningJobRequest* request,
                                            otaro::v1::TuningJob* response) {
  OTARO_TUNING_ENTER();
  if (request->id().empty()) return MissingId();
  auto job = jobs_->Cancel(request->id());
  if (!job.ok()) return ToGrpcStatus(job.status());
  *response = std::move(*job);
  return grpc::Status::OK;
}

grpc::Status TuningService::StreamTuningJobEvents(
    grpc::ServerContext* context, const otaro::v1::StreamTuningJobEventsRequest* request,
    grpc::ServerWriter<otaro::v1::TuningJobEvent>* writer) {
  OTARO_TUNING_ENTER();
  if (request->id().empty()) return MissingId();
  uint64_t after = 0;
  while (!context->IsCancelled()) {
    if (gate_->closed()) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          "the server is shutting down; attach again to continue");
    }
    bool ended = false;
    auto events = jobs_->WaitEvents(request->id(), after, absl::Now() + absl::Seconds(1), &ended);
    if (!events.ok()) return ToGrpcStatus(events.status());
    for (const otaro::v1::TuningJobEvent& event : *events) {
      if (!writer->Write(event)) return grpc::Status::CANCELLED;  // the client went away
      after = event.sequence();
    }
    if (ended) return grpc::Status::OK;
  }
  return grpc::Status::CANCELLED;
}

}  // namespace otaro::server
