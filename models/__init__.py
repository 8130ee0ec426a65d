"""slatestream models: sequential (GRU) and River online models, registry, trainer, evaluation.

Never imports `streams/`, `bandits/`, Kafka or Faust.
"""

from models.base import OnlineModel, SequentialModel, SlateFeedback, TrainingBatch
from models.baselines import PopularityModel
from models.gru import BayesGRUModel, GRUConfig, GRUModel
from models.items import CategoryVocab, ItemIndex
from models.online_trainer import OnlineTrainer, TrainerConfig
from models.registry import MODEL_KINDS, ModelRegistry, SnapshotError, SnapshotWatcher
from models.river_models import RiverFMModel, RiverLogRegModel

__all__ = [
    "MODEL_KINDS",
    "BayesGRUModel",
    "CategoryVocab",
    "GRUConfig",
    "GRUModel",
    "ItemIndex",
    "ModelRegistry",
    "OnlineModel",
    "OnlineTrainer",
    "PopularityModel",
    "RiverFMModel",
    "RiverLogRegModel",
    "SequentialModel",
    "SlateFeedback",
    "SnapshotError",
    "SnapshotWatcher",
    "TrainerConfig",
    "TrainingBatch",
]
