"""Build script for kmixup: the package plus its compiled ops, ``kmixup._C``.

Metadata lives in pyproject.toml. The extension always holds the C++ CPU kernels; the
CUDA kernels join it when torch was built with CUDA and nvcc is found (FORCE_CUDA=1
forces them, FORCE_CUDA=0 leaves them out).

Building the extension needs torch in the build environment, hence ``pip install
--no-build-isolation`` (pip's isolated build environment has no torch, and torch is
deliberately not a build requirement: it would pull a fresh, multi-GB torch that need
not match the one installed). Every build either compiles the ops or stops with an error
that says what to do; it never silently installs the pure-PyTorch package. That package
(same results, slower) is built only when asked for: ``KMIXUP_PURE=1``. Metadata-only
commands (sdist, egg_info, dist_info) need no torch.
"""

import glob
import importlib.machinery
import json
import os
import shutil

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

BUILD_INFO = os.path.join("kmixup", "_build_info.json")  # read by python -m kmixup.info

try:
    import torch
    from torch.utils import cpp_extension
except ImportError:
    torch = None

PURE = os.environ.get("KMIXUP_PURE") == "1"

PURE_HINT = """\
  * Or install the pure-PyTorch package (same results, slower, no compiler needed):
        KMIXUP_PURE=1 pip install .
See README.md, section "Install"."""

NO_TORCH = f"""
kmixup: cannot build the compiled ops: torch does not import in the build environment
(pip builds in an isolated environment, without torch, unless told otherwise).
  * Install torch first, then build against it:
        pip install --no-build-isolation .
{PURE_HINT}
"""


def _compile_failed(err: Exception) -> str:
    return f"""
kmixup: compiling the ops failed: {err}
(the compiler's own messages are above).
  * The build needs a C++17 compiler (g++ or clang++) and, for the CUDA kernels, an nvcc
    whose CUDA version matches torch's (torch.version.cuda; CUDA_HOME picks the toolkit,
    FORCE_CUDA=0 builds the CPU kernels only).
{PURE_HINT}
"""


# The oldest torch the extension loads under, as TORCH_TARGET_VERSION encodes it (major
# and minor in the top two bytes); kmixup/_ops.py (STABLE_ABI_TORCH) says the same. 2.13
# is where the stable ABI has all it uses: Stream::nativeHandle (the CUDA current stream)
# and the messages of errors raised inside torch.
TORCH_TARGET_VERSION = "0x020d000000000000"


def _extensions():
    if PURE:
        return [], {}
    if torch is None:
        # Declared so that a build (not sdist or egg_info) reaches build_ext, which fails.
        return [Extension("kmixup._C", sources=[])], {"build_ext": _NoTorch}
    force_cuda = os.environ.get("FORCE_CUDA")
    with_cuda = force_cuda == "1" or (
        force_cuda != "0" and torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None
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
    return [ext], {"build_ext": _Build.with_options(use_ninja=True)}


class _NoTorch(build_ext):
    def run(self):
        raise SystemExit(NO_TORCH)


if torch is not None:

    class _Build(cpp_extension.BuildExtension):
        """A failed compilation stops the build with what to do instead."""

        def build_extensions(self):
            # Not build_extension: torch checks the compiler (runs `c++ --version`) and
            # nvcc's CUDA version here, before it builds anything.
            try:
                super().build_extensions()
            except Exception as err:  # compiler missing or failing, headers missing, ...
                raise SystemExit(_compile_failed(err)) from err
            with open(os.path.join(self.build_lib, BUILD_INFO), "w") as f:
                json.dump(_build_record(self.extensions[0]), f, indent=1)

        def copy_extensions_to_source(self):
            """In-place and editable builds: no _C of an earlier build may stay in the tree
            beside the new one (a `_C.cpython-3XX-*.so` would be loaded even before a new
            `_C.abi3.so`); the build record goes beside the new _C."""
            here = os.path.dirname(os.path.abspath(__file__))
            for ext in self.extensions:
                built = os.path.join(here, self.get_ext_filename(self.get_ext_fullname(ext.name)))
                base = os.path.join(here, *ext.name.split("."))
                for suffix in importlib.machinery.EXTENSION_SUFFIXES:
                    stale = base + suffix
                    if os.path.exists(stale) and stale != built:
                        os.remove(stale)
            super().copy_extensions_to_source()
            shutil.copyfile(os.path.join(self.build_lib, BUILD_INFO),
                            os.path.join(here, BUILD_INFO))


def _build_record(ext) -> dict:
    """How ``ext`` was built, for ``python -m kmixup.info`` (kmixup/_build_info.json)."""
    with_cuda = any(source.endswith(".cu") for source in ext.sources)
    compile_args = ext.extra_compile_args  # with what BuildExtension added
    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda if with_cuda else None,
        "compile_args": {k: v for k, v in compile_args.items()
                         if k == "cxx" or (with_cuda and k == "nvcc")},
        "link_args": ext.extra_link_args,
        "TORCH_CUDA_ARCH_LIST": os.environ.get("TORCH_CUDA_ARCH_LIST"),
        # The -gencode flags torch adds to nvcc's command line for this build.
        "cuda_arch_flags": cpp_extension._get_cuda_arch_flags() if with_cuda else [],
    }


ext_modules, cmdclass = _extensions()

setup(
    packages=find_packages(include=["kmixup*"]),
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    # A wheel with the extension is tagged abi3: it serves every CPython from 3.10 on.
    options={"bdist_wheel": {"py_limited_api": "cp310"}} if ext_modules else {},
)
