"""Deployment: ONNX export (checked against PyTorch), OpenVINO IR, TensorRT engines.

onnx / onnxruntime / openvino / tensorrt are imported inside the functions that need them.
"""
from .onnx import ExportError, ExportReport, export_onnx
from .openvino import compile_openvino, export_openvino
from .tensorrt import TensorRTUnavailable, build_engine, engine_latency

__all__ = ["export_onnx", "ExportReport", "ExportError", "export_openvino", "compile_openvino", "build_engine",
           "engine_latency", "TensorRTUnavailable"]
