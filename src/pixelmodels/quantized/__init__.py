"""Integer networks for the coding path: probability tables that are bit-identical on every machine.

A float network's last bits depend on the kernels that run it (``ATEN_CPU_CAPABILITY=avx512 / avx2 / default``,
thread count, CPU or GPU), and one ulp in a log-probability changes the quantized frequency tables, so a file
written on one machine may not decode on another. Following Ballé, Johnston & Minnen 2019 ("Integer networks
for data compression with latent-variable models", ICLR, sections 2-3), ``quantize`` turns a trained float model
into an ``IntegerModel`` whose coding path is exact integer arithmetic:

- weights are integers (per-output-channel scales); activations are integers with a per-tensor scale chosen from
  calibration images and a hard clamp, so every convolution's accumulator is provably below 2**53 and is
  computed exactly by a float64 convolution (integer-valued float64 sums are exact in any order, on any kernel
  set, on CPU and GPU);
- rescaling between layers is an integer multiply and an arithmetic right shift (int64);
- nonlinearities (tanh, sigmoid, exp, the logistic CDF) are integer lookup tables holding the function at every
  fixed-point input of their range, built once at quantization time and stored with the model (never
  recomputed at decode time);
- the output distribution (categorical softmax, or the discretized mixture of logistics with its linear
  R -> G -> B dependence) becomes integer frequency tables summing to ``2**precision`` with a floor of 1,
  through exact integer division.

API (stable; ``pixelmodels.codec`` calls exactly this)::

    from pixelmodels.quantized import quantize, IntegerModel
    qmodel = quantize(float_model, calibration_images)        # (N, C, H, W) integer images in [0, K)
    qmodel.image_shape, qmodel.num_levels, qmodel.precision    # (C, H, W), K, bits of the tables
    qmodel.fingerprint                                         # hex SHA-256 of config + integer tensors
    qmodel.config                                              # JSON-able dict
    qmodel.frequencies(x, cond=None)  # x LongTensor (B, C, H, W) -> int64 (B, C, H, W, K), teacher-forced:
                                      # the table of every sub-pixel given the true prefix (one forward pass)
    qmodel.decode(n, decode_fn, cond=None, progress=False)  # -> LongTensor (n, C, H, W); walks raster order,
                                      # R -> G -> B inside a pixel, calling decode_fn(tables, h, w, c) with
                                      # tables np.ndarray int64 (n, K); it returns np.ndarray (n,) of values.
                                      # The tables equal ``frequencies`` of the final images exactly.
    qmodel.bits(x, cond=None)         # float64 (B,): -sum log2(freq / 2**precision), the exact code length
    qmodel.save(folder); IntegerModel.load(folder)   # integer.json + integer.safetensors, no pickle

``cond``: class labels (B,) (or one int) for class-conditional ``gated_pixelcnn`` models; None otherwise.

Supported families: ``gated_pixelcnn`` (categorical and dmol heads, unconditional or class-conditional) and
``pixelcnn`` (categorical and dmol heads). Not supported yet, and what it would take:

- ``gated_pixelcnn`` with a spatial conditioning map: the map is a float input; it would need its own quantizer
  (and a place in the file); refused by ``quantize``.
- ``pixelcnn_pp``: concat_elu (an ELU table over a calibrated range), strided down-sampling and transposed
  up-sampling convolutions (exact as float64 sums too, but the decoder needs their schedule), dropout (off in
  eval). Nothing in it is non-integer-friendly; it is work not done.
- ``row_lstm`` / ``diagonal_bilstm``: LSTM gates through sigmoid / tanh tables and a cell state with a calibrated
  range; the recurrence multiplies the quantization error over rows, so activation bits must be tuned; the
  diagonal model's skew is plain indexing.
- ``spn``: masked self-attention needs an exact softmax over a row of scores (exp table + integer division, as
  in the categorical head) and a stored schedule of slices; the stage composition is otherwise integer-friendly.
"""

from pixelmodels.quantized.model import IntegerModel, load
from pixelmodels.quantized.quantize import SUPPORTED, quantize

__all__ = ["SUPPORTED", "IntegerModel", "load", "quantize"]
