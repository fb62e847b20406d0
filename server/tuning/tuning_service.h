// otaro.v1.Tuning over the TuningJobManager: request validation and status
// mapping only; the jobs themselves live in the manager.
#ifndef OTARO_SERVER_TUNING_TUNING_SERVICE_H_
#define OTARO_SERVER_TUNING_TUNING_SERVICE_H_

#include "otaro/v1/tuning.grpc.pb.h"
#include "server/service/call_gate.h"
#include "server/tuning/job_manager.h"

namespace otaro::server {

class TuningService final : public otaro::v1::Tuning::Service {
 public:
  // `jobs` null: the server has no store (store.dir), and every call says so.
  TuningService(CallGate* gate, TuningJobManager* jobs) : gate_(gate), jobs_(jobs) {}

  grpc::Status CreateTuningJob(grpc::ServerContext* context,
                               const otaro::v1::CreateTuningJobRequest* request,
                               otaro::v1::TuningJob* response) override;
  grpc::Status GetTuningJob(grpc::ServerContext* context,
                            const otaro::v1::GetTuningJobRequest* request,
                            otaro::v1::TuningJob* response) override;
  grpc::Status ListTuningJobs(grpc::ServerContext* context,
                              const otaro::v1::ListTuningJobsRequest* request,
                              otaro::v1::ListTuningJobsResponse* response) override;
  grpc::Status CancelTuningJob(grpc::ServerContext* context,
                               const otaro::v1::CancelTuningJobRequest* request,
                               otaro::v1::TuningJob* response) override;
  // History first, then live events until the job ends (then OK), the client
  // goes away, or the server shuts down (then UNAVAILABLE: attach again).
  grpc::Status StreamTuningJobEvents(
      grpc::ServerContext* context, const otaro::v1::StreamTuningJobEventsRequest* request,
      grpc::ServerWriter<otaro::v1::TuningJobEvent>* writer) override;

 private:
  CallGate* gate_;
  TuningJobManager* jobs_;
};

}  // namespace otaro::server

#endif  // OTARO_SERVER_TUNING_TUNING_SERVICE_H_
