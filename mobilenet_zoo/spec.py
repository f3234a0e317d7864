"""The MobileNet v1 architecture as data (Howard et al. 2017, Table 1; TF-slim
``mobilenet_v1.py``): what the backbone builds and what the converters map,
importable without Keras."""

# Table 1 of the paper: (stride, pointwise filters at alpha = 1) for the 13
# depthwise separable blocks that follow the first full convolution.
# The paper prints stride 2 for block 13; TF-slim and Keras use 1 (7x7 output).
BLOCK_SPECS: tuple[tuple[int, int], ...] = (
    (1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512), (1, 512),
    (1, 512), (1, 512), (1, 512), (1, 512), (2, 1024), (1, 1024),
)  # fmt: skip
STEM_FILTERS = 32  # Table 1: conv 3x3x3x32, stride 2.
# Table 5 "Shallow MobileNet": the five 14x14x512 blocks removed.
SHALLOW_REMOVED_BLOCKS = (7, 8, 9, 10, 11)
VARIANTS = ("separable", "full", "shallow")
OUTPUT_STRIDES = (8, 16, 32)
MIN_INPUT_SIDE = 32
# BatchNorm epsilon of TF-slim (slim.batch_norm in mobilenet_v1_arg_scope) and
# keras.applications; momentum is Keras's default.
BN_EPSILON = 1e-3
