from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
version = {}
exec((HERE / "endogs" / "__init__.py").read_text(), version)

setup(
    name="endogs",
    version=version["__version__"],
    description="Reconstruct deforming surgical scenes from endoscopic video with dynamic 3D Gaussian splatting",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # only the endogs namespace (the viewer is endogs.viewer; it has no data files: viser ships its web client);
    # the repository's scripts/ and configs/benchmark/ stay in the checkout
    packages=find_packages(include=["endogs", "endogs.*"]),
    package_data={"endogs.configs": ["*.yaml"]},
    install_requires=[
        # torch stays a range so GPU users keep their CUDA build; the Makefile installs the CPU
        # build (requirements-cpu.txt) first on machines without an NVIDIA GPU.
        "torch>=2.1",
        "numpy",
        "gsplat==1.5.3",
        "packaging",  # imported by gsplat's CUDA loader but not declared by gsplat 1.5.3
        "viser==1.1.1",
        "nerfview==0.1.3",
        "matplotlib",  # nerfview 0.1.3 imports matplotlib, splines and scipy without declaring them
        "splines",
        "scipy",
        "tyro>=0.9",
        "open3d-cpu==0.19.0",  # 0.20 needs libusb and extracts empty TSDF meshes
        "opencv-python-headless",
        "pytorch-msssim",
        "numba==0.68.1",  # compiled CPU rasterizer kernels (wheels for Linux, macOS, Windows)
        "torchmetrics",
        "imageio",
        "imageio-ffmpeg",
        "plyfile",
        "tqdm",
        "rich",
        "jaxtyping",
        "pyyaml",
        "tifffile",
        "pillow",
        "typing_extensions",
    ],
    extras_require={
        # endogs batch: many scenes x configs as Ray tasks (plain ray, no dashboard extras)
        "cluster": ["ray==2.60.0"],
        # playwright drives the system chromium in the browser tests; ray runs the endogs batch tests
        "dev": ["pytest", "pytest-timeout", "playwright", "ray==2.60.0"],
    },
    entry_points={"console_scripts": ["endogs=endogs.cli:entry"]},
)
