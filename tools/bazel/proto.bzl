"""C++ code generation for .proto files with the system protoc and grpc_cpp_plugin.

Bazel 4.2.3's native proto rules want a protobuf source repository; we have the
Debian binaries instead, so one genrule runs protoc and a cc_library wraps the
output. Import paths are relative to the package that calls the macro, which is
also added to the include path (e.g. proto/ -> #include "otaro/v1/otaro.pb.h").
"""

load("@rules_cc//cc:defs.bzl", "cc_library")

def otaro_proto_library(name, srcs, deps = [], grpc = True, visibility = None):
    """Generates <name> (cc_library) from srcs; deps are other otaro_proto_library targets."""
    outs = []
    for src in srcs:
        stem = src[:-len(".proto")]
        outs += [stem + ".pb.h", stem + ".pb.cc"]
        if grpc:
            outs += [stem + ".grpc.pb.h", stem + ".grpc.pb.cc"]

    package = native.package_name()
    grpc_flags = " --grpc_out=$(GENDIR)/{pkg} --plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin".format(pkg = package) if grpc else ""
    native.genrule(
        name = name + "_codegen",
        srcs = srcs,
        outs = outs,
        cmd = ("/usr/bin/protoc -I{pkg} -I/usr/include --cpp_out=$(GENDIR)/{pkg}" + grpc_flags +
               " $(SRCS)").format(pkg = package or "."),
        message = "protoc " + name,
    )
    cc_library(
        name = name,
        srcs = [o for o in outs if o.endswith(".cc")],
        hdrs = [o for o in outs if o.endswith(".h")],
        includes = ["."],
        deps = deps + ["@system//:protobuf"] + (["@system//:grpc++"] if grpc else []),
        visibility = visibility,
    )
