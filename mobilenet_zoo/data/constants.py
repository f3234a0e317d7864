"""The data contract's numbers, shared by the tf.data sources (``data.detection``,
``data.segmentation``) and the task preprocessors; importable without TensorFlow."""

MAX_BOXES = 100  # ground-truth boxes per image after padding (TF OD API max_number_of_boxes)
IGNORE_LABEL = 255  # PASCAL VOC convention: pixels that no loss or metric counts
