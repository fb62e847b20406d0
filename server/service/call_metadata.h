// Call metadata keys that otaro's own in-process callers set and the services
// read. Not part of the public API: clients never need them.
#ifndef OTARO_SERVER_SERVICE_CALL_METADATA_H_
#define OTARO_SERVER_SERVICE_CALL_METADATA_H_

namespace otaro::server {

// "http" on calls the OpenAI API adapter (server/openai) makes; the Inference
// service labels its request metrics with it (protocol="http", else "grpc").
inline constexpr char kProtocolMetadataKey[] = "otaro-protocol";

}  // namespace otaro::server

#endif  // OTARO_SERVER_SERVICE_CALL_METADATA_H_
