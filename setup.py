"""gpunet: GPUNet (CVPR 2022) as a library: latency-tiered model hub, weights, deployment, NAS."""
from setuptools import find_packages, setup

EXTRAS = {
    "onnx": ["onnx>=1.16", "onnxruntime>=1.18", "onnxscript>=0.1"],
    "openvino": ["openvino>=2024.0"],
    "tensorrt": ["tensorrt>=10.0"],
    "hf": ["huggingface_hub>=0.23"],
    "search": ["ray[tune]>=2.9", "scipy>=1.10", "scikit-learn>=1.3", "optuna>=3.4"],
    "quant": ["nncf>=2.10"],
    "plot": ["matplotlib>=3.7"],
    "train": ["pyyaml>=6.0"],
    "test": ["pytest>=7", "hypothesis>=6", "scikit-learn>=1.3"],
}
# "all": everything that installs without a GPU (TensorRT needs NVIDIA's wheels and a GPU).
EXTRAS["all"] = sorted({r for k, v in EXTRAS.items() if k not in ("tensorrt", "test") for r in v})

setup(
    name="gpunet",
    version="0.1.0",
    description="GPUNet models tiered by inference latency: hub, weights, deployment and the NAS that finds them",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9",
    packages=find_packages(include=["gpunet", "gpunet.*"]),
    package_data={"gpunet": ["data/*.json", "data/specs/*.json"]},
    include_package_data=True,
    install_requires=[
        # torch/torchvision are pinned by the environment (see README); any recent release works.
        "torch>=2.1",
        "torchvision>=0.16",
        "timm>=1.0.16",
        "safetensors>=0.4",
        "numpy>=1.24",
        "tqdm>=4.60",
    ],
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["gpunet=gpunet.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: Apache Software License",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
