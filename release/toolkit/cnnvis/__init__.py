"""Student toolkit for the course: data, VGG16 base, images, plots and the grading evidence channel."""
