"""Build script for kmixup: the package plus its compiled ops, ``kmixup._C``.

Metadata lives in pyproject.toml. The extension always holds the C++ CPU kernels; the
CUDA kernels join it when torch was built with CUDA and nvcc is found (or FORCE_CUDA=1).
Building needs torch, hence ``pip install --no-build-isolation``. If compilation fails
(no compiler, say), the package still installs and serves every op with its pure-PyTorch
kernels; a warning says so.
"""

import glob
import json
import os
import shutil
import warnings

from setuptools import find_packages, setup

BUILD_INFO = os.path.join("kmixup", "_build_info.json")  # read by python -m kmixup.info

try:
    import torch
    from torch.utils import cpp_extension
except ImportError:  # metadata-only calls (e.g. sdist) need no torch
    torch = None


def _extensions():
    if torch is None or os.environ.get("KMIXUP_DISABLE_EXTENSION") == "1":
        return [], {}
    with_cuda = os.environ.get("FORCE_CUDA") == "1" or (
        torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None
    )
    sources = ["csrc/kmixup.cpp", *sorted(glob.glob("csrc/cpu/*.cpp"))]
    # at::parallel_for is header code: without OpenMP it would run on one thread.
    cxx_flags = ["-O3", "-fopenmp"]
    if with_cuda:
        sources += sorted(glob.glob("csrc/cuda/*.cpp") + glob.glob("csrc/cuda/*.cu"))
        extension = cpp_extension.CUDAExtension
        flags = {"cxx": cxx_flags, "nvcc": ["-O3", "-std=c++17"]}
    else:
        extension = cpp_extension.CppExtension
        flags = {"cxx": cxx_flags}
    here = os.path.dirname(os.path.abspath(__file__))
    ext = extension(
        "kmixup._C",
        sources,
        include_dirs=[os.path.join(here, "csrc")],
        extra_compile_args=flags,
        extra_link_args=["-fopenmp"],
        py_limited_api=False,
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
                return
            with open(os.path.join(self.build_lib, BUILD_INFO), "w") as f:
                json.dump(_build_record(self.extensions[0]), f, indent=1)

        def copy_extensions_to_source(self):
            """In-place and editable builds: with no new _C, no _C of an earlier build
            may stay in the tree either (it would be loaded as if just built)."""
            here = os.path.dirname(os.path.abspath(__file__))
            build_info = os.path.join(here, BUILD_INFO)
            if not self.failed:
                super().copy_extensions_to_source()
                shutil.copyfile(os.path.join(self.build_lib, BUILD_INFO), build_info)
                return
            if os.path.exists(build_info):
                os.remove(build_info)
            for ext in self.extensions:
                stale = os.path.join(here, self.get_ext_filename(self.get_ext_fullname(ext.name)))
                if os.path.exists(stale):
                    os.remove(stale)


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
)
