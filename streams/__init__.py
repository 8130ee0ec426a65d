"""slatestream: Kafka in, fresh Thompson-sampled slates out (everything that touches Kafka)."""

import sys

__version__ = "0.1.0"

# slatestream computes on CPU: keep torch from importing triton, its GPU kernel compiler
# (torch._dynamo loads it on the first optimizer step when it is installed, as it is with the
# CUDA wheel from PyPI). Its extension printed ~30 "nanobind: leaked instances" lines whenever
# a trainer or scorer stopped. torch looks for triton with guarded imports and goes on without.
sys.modules.setdefault("triton", None)  # type: ignore[arg-type]  # None: "not installed"
