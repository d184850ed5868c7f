"""Build script for kmixup.

Metadata lives in pyproject.toml. This file exists for the compiled extension: a later
change adds the C++/CUDA ops here through ``torch.utils.cpp_extension.BuildExtension``
(which needs torch at build time, hence ``pip install --no-build-isolation``).
"""

from setuptools import find_packages, setup

ext_modules = []  # C++/CUDA extensions go here (planned).
cmdclass = {}

setup(
    packages=find_packages(include=["kmixup*"]),
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
