"""SSD-MobileNet on COCO (paper Table 13), with the TF Object Detection API's setup.

    python recipes/ssd_coco.py                                   # COCO if on disk, else embedded
    python recipes/ssd_coco.py --data-dir ~/tensorflow_datasets  # TFDS coco/2017
    python recipes/ssd_coco.py --dataset voc --data-dir DIR      # TFDS voc/2007
    python recipes/ssd_coco.py --smoke                           # mock COCO, a few steps

Trains with model.fit (progress bar, TensorBoard, last/best checkpoints,
--resume), evaluates with pycocotools, saves model.keras and model.tflite (with
decoding and NMS) and a PNG of detections on validation images in --out. The
data, training loop and outputs are the shared detection recipe's
(mobilenet_zoo/training/detection.py); this file adds the model and its optimizer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mobilenet_zoo.paper import TABLE_13
from mobilenet_zoo.training import flags
from mobilenet_zoo.training.schedule import Schedule, Schedules

if TYPE_CHECKING:
    from mobilenet_zoo.training.detection import DetectionRecipe

# ssd_mobilenet_v1_coco.config: RMSProp 0.004, batch 24. On the embedded set 11
# epochs with the backbone frozen to P3 (1.75x faster steps; our choice).
SCHEDULES = Schedules(
    full=Schedule(epochs=100, batch_size=24, learning_rate=0.004, eval_batch=25),
    embedded=Schedule(epochs=11, batch_size=24, learning_rate=0.004, eval_batch=25, freeze_until="P3"),
    smoke=Schedule(epochs=1, batch_size=2, learning_rate=0.004, steps_per_epoch=2, eval_batch=2),
)
PAPER_TABLE_13 = {"SSD 300 MobileNet": TABLE_13["SSD 300 MobileNet"]}


def parse_args(argv=None):
    p, m, o = flags.detection_parser(__doc__, "runs/ssd_coco", SCHEDULES, "ssd_mobilenet_v1",
                                     "optimizer (config: RMSProp 0.004, momentum 0.9, decay 0.9, eps 1.0)")
    m.add_argument("--loss", choices=["hard_mining", "focal"], default="hard_mining")
    m.add_argument("--class-prior", type=float, default=0.01,
                   help="initial class probability (RetinaNet init; 0 = zero bias as TF OD API)")
    m.add_argument("--weight-decay", type=float, default=None,
                   help="L2 (slim convention; default: SSD's weight_decay, the config's)")
    o.add_argument("--momentum", type=float, default=0.9)
    o.add_argument("--rms-decay", type=float, default=0.9, help="RMSProp decay (rho)")
    o.add_argument("--rms-epsilon", type=float, default=1.0)
    o.add_argument("--lr-decay-factor", type=float, default=0.95)
    o.add_argument("--lr-decay-steps", type=int, default=800720, help="steps between learning-rate decays")
    return p.parse_args(argv)


def detection_recipe(args) -> DetectionRecipe:
    import keras

    from mobilenet_zoo.detection import FocalLoss, SSDLoss, ssd_mobilenet_v1
    from mobilenet_zoo.training import detection as recipe

    def optimizer(plan):
        schedule = keras.optimizers.schedules.ExponentialDecay(
            plan.learning_rate, args.lr_decay_steps, args.lr_decay_factor, staircase=True)
        return keras.optimizers.RMSprop(schedule, rho=args.rms_decay, momentum=args.momentum,
                                        epsilon=args.rms_epsilon)

    loss = FocalLoss() if args.loss == "focal" else SSDLoss()
    return recipe.DetectionRecipe(
        SCHEDULES, ssd_mobilenet_v1, optimizer, lambda plan: PAPER_TABLE_13,
        model_kwargs={"detection_loss": loss, "weight_decay": args.weight_decay,
                      "class_prior": args.class_prior or None})


def main(argv=None) -> dict:
    args = parse_args(argv)
    # --help and usage errors answered above; now TensorFlow (quietly) or a TF-free backend.
    from mobilenet_zoo.backend import prepare_backend

    prepare_backend()
    from mobilenet_zoo.training import detection as recipe

    return recipe.run(detection_recipe(args), flags.run_options(args), flags.detection_data(args),
                      flags.train_flags(args), args.alpha, args.weights, flags.export_options(args))


if __name__ == "__main__":
    main()
