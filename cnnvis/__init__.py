"""Student toolkit for the course: data, VGG16 base, images, plots and the grading evidence channel."""

from cnnvis.quiet import set_logging_env

# Before anything imports TensorFlow: its logging settings only count when set before it loads.
set_logging_env()
