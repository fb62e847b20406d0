"""cuda_library: compiles .cu files with the CUDA toolkit's nvcc and links cudart + cuBLASLt.

No GPU is needed to build. Code is generated for every architecture we deploy on:
sm_80 (A100), sm_86 (A6000, the OTARo paper's GPU), sm_89 (L4/L40S), sm_90a (H100/H200),
plus compute_90 PTX so newer GPUs can JIT it. Under `--config=cpu` every target made
here is incompatible and `bazel build //...` skips it.
"""

load("@rules_cc//cc:defs.bzl", "cc_library")

NVCC = "/usr/local/cuda/bin/nvcc"
CUDA_HOME = "/usr/local/cuda"

CUDA_ARCH_FLAGS = " ".join([
    "-gencode=arch=compute_80,code=sm_80",
    "-gencode=arch=compute_86,code=sm_86",
    "-gencode=arch=compute_89,code=sm_89",
    "-gencode=arch=compute_90a,code=sm_90a",
    "-gencode=arch=compute_90,code=compute_90",
])

# Targets that only make sense with the CUDA toolkit present.
CUDA_ONLY = select({
    "//tools/bazel:cuda_disabled": ["@platforms//:incompatible"],
    "//conditions:default": [],
})

def cuda_library(name, srcs, hdrs = [], deps = [], cuda_hdrs = [], nvcc_flags = [], visibility = None, **kwargs):
    """A cc_library whose objects come from nvcc.

    Args:
      srcs: .cu files.
      hdrs: public C++ headers (plain host code; what callers include).
      deps: cc_library deps for the link and the callers.
      cuda_hdrs: extra headers the .cu files include (from this or other packages).
      nvcc_flags: extra nvcc flags.
    """
    objs = []
    for src in srcs:
        obj = "_objs/{}/{}.o".format(name, src[:-len(".cu")])
        native.genrule(
            name = "{}_{}_nvcc".format(name, src.replace("/", "_").replace(".", "_")),
            srcs = [src] + hdrs + cuda_hdrs,
            outs = [obj],
            cmd = " ".join([
                NVCC,
                "-std=c++17 -O3 --expt-relaxed-constexpr -lineinfo",
                CUDA_ARCH_FLAGS,
                "-Xcompiler -fPIC",
                "-I. -I$(GENDIR)",
                " ".join(nvcc_flags),
                "-c $(location {})".format(src),
                "-o $@",
            ]),
            target_compatible_with = CUDA_ONLY,
            message = "nvcc " + src,
        )
        objs.append(obj)

    cc_library(
        name = name,
        srcs = objs,
        hdrs = hdrs,
        deps = deps,
        linkopts = [
            "-L{}/lib64".format(CUDA_HOME),
            "-lcublasLt",
            "-lcudart",
            "-Wl,-rpath,{}/lib64".format(CUDA_HOME),
        ],
        target_compatible_with = CUDA_ONLY,
        visibility = visibility,
        **kwargs
    )
