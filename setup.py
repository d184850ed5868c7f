"""Build script for kmixup: the package plus its compiled ops, ``kmixup._C``.

Metadata lives in pyproject.toml. The extension always holds the C++ CPU kernels; the
CUDA kernels join it when torch was built with CUDA and nvcc is found (or FORCE_CUDA=1).
Building needs torch, hence ``pip install --no-build-isolation``. If compilation fails
(no compiler, say), the package still installs and serves every op with its pure-PyTorch
kernels; a warning says so.
"""

import glob
import importlib.machinery
import os
import warnings

from setuptools import find_packages, setup

try:
    import torch
    from torch.utils import cpp_extension
except ImportError:  # metadata-only calls (e.g. sdist) need no torch
    torch = None


# The oldest torch the extension loads under, as TORCH_TARGET_VERSION encodes it (major
# and minor in the top two bytes); kmixup/_ops.py (STABLE_ABI_TORCH) says the same. 2.13
# is where the stable ABI has all it uses: Stream::nativeHandle (the CUDA current stream)
# and the messages of errors raised inside torch.
TORCH_TARGET_VERSION = "0x020d000000000000"


def _extensions():
    if torch is None or os.environ.get("KMIXUP_DISABLE_EXTENSION") == "1":
        return [], {}
    with_cuda = os.environ.get("FORCE_CUDA") == "1" or (
        torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None
    )
    sources = ["csrc/kmixup.cpp", *sorted(glob.glob("csrc/cpu/*.cpp"))]
    # Only the LibTorch stable ABI, from this torch on: one build serves every later torch.
    cxx_flags = ["-O3", f"-DTORCH_TARGET_VERSION={TORCH_TARGET_VERSION}"]
    if with_cuda:
        sources += sorted(glob.glob("csrc/cuda/*.cpp") + glob.glob("csrc/cuda/*.cu"))
        extension = cpp_extension.CUDAExtension
        # USE_CUDA: the stable ABI's CUDA error check (STD_CUDA_CHECK) is declared under it.
        flags = {"cxx": [*cxx_flags, "-DUSE_CUDA"], "nvcc": ["-O3", "-std=c++17"]}
    else:
        extension = cpp_extension.CppExtension
        flags = {"cxx": cxx_flags}
    here = os.path.dirname(os.path.abspath(__file__))
    ext = extension(
        "kmixup._C",
        sources,
        include_dirs=[os.path.join(here, "csrc")],
        extra_compile_args=flags,
        # The limited Python API (torch defines Py_LIMITED_API as CPython 3.10's).
        py_limited_api=True,
    )
    return [ext], {"build_ext": _OptionalBuild.with_options(use_ninja=True)}


if torch is not None:

    class _OptionalBuild(cpp_extension.BuildExtension):
        """Turns a failed compilation into a warning: the pure-PyTorch kernels still work."""

        failed = False

        def build_extensions(self):
            # Not build_extension: torch checks the compiler (runs `c++ --version`) here,
            # before it builds anything, so a missing compiler raises from this level.
            try:
                super().build_extensions()
            except Exception as err:  # compiler missing, headers missing, ...
                self.failed = True
                warnings.warn(
                    f"kmixup: building the compiled ops failed ({err}); installing the "
                    "pure-PyTorch implementation only (slower, same results).",
                    stacklevel=1,
                )

        def copy_extensions_to_source(self):
            """In-place and editable builds: no _C of an earlier build may stay in the tree
            beside the new one, or instead of it when there is none: it would be loaded as
            if just built (a `_C.cpython-3XX-*.so` even before a new `_C.abi3.so`)."""
            here = os.path.dirname(os.path.abspath(__file__))
            for ext in self.extensions:
                built = os.path.join(here, self.get_ext_filename(self.get_ext_fullname(ext.name)))
                base = os.path.join(here, *ext.name.split("."))
                for suffix in importlib.machinery.EXTENSION_SUFFIXES:
                    stale = base + suffix
                    if os.path.exists(stale) and (self.failed or stale != built):
                        os.remove(stale)
            if not self.failed:
                super().copy_extensions_to_source()


ext_modules, cmdclass = _extensions()

setup(
    packages=find_packages(include=["kmixup*"]),
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    # A wheel with the extension is tagged abi3: it serves every CPython from 3.10 on.
    options={"bdist_wheel": {"py_limited_api": "cp310"}} if ext_modules else {},
)
