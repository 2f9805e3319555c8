//! cbam-compiler: host-side ONNX import, CBAM recognition, quantization and blob writing.
