"""prunefl_lite: FedAvg with Keras pruning, the helper package of the course.

Importing the package selects Keras 2 (``tf_keras``), which tensorflow-model-optimization needs,
and quiets TensorFlow's start-up logging. Import it before TensorFlow:

>>> import prunefl_lite as pfl
>>> import os
>>> os.environ["TF_USE_LEGACY_KERAS"]
'1'
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # tfmot works only with Keras 2 (tf_keras)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide TensorFlow's C++ info/warning lines

__version__ = "0.1.0"
