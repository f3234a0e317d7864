"""Faster R-CNN MobileNet on COCO (paper Table 13), with the TF Object Detection API's setup.

    python recipes/faster_rcnn_coco.py                                    # COCO if on disk, else embedded
    python recipes/faster_rcnn_coco.py --data-dir DIR --image-size 300    # Table 13 "Faster-RCNN 300"
    python recipes/faster_rcnn_coco.py --data-dir DIR --image-size 600    # Table 13 "Faster-RCNN 600"
    python recipes/faster_rcnn_coco.py --dataset voc --data-dir DIR       # TFDS voc/2007
    python recipes/faster_rcnn_coco.py --smoke                            # mock COCO, a few steps

The shared detection recipe (mobilenet_zoo/training/detection.py) with another
model and optimizer: the same data, flags and outputs as recipes/ssd_coco.py
(model.fit with TensorBoard, the last and best epochs' checkpoints and --resume;
pycocotools evaluation, model.keras, model.tflite with NMS and ROI crops from
TFLite builtins, detections.png, results.json with the paper's row).
"""

from __future__ import annotations

from mobilenet_zoo.paper import TABLE_13
from mobilenet_zoo.training import flags
from mobilenet_zoo.training.schedule import Schedule, Schedules

# faster_rcnn_mobilenet_v1 configs: momentum SGD, lr 3e-4, batch 1. On the embedded set
# (our choice, a few minutes of training): batch 8, lr 0.01, 16 second-stage proposals
# per image (~2.5 objects per image; the second stage costs 78M mult-adds per proposal).
SMALL = {"box_sampler": {"size": 16}}
SCHEDULES = Schedules(
    full=Schedule(epochs=100, batch_size=1, learning_rate=3e-4, eval_batch=10),
    embedded=Schedule(epochs=5, batch_size=8, learning_rate=0.01, eval_batch=10, freeze_until="P3",
                      model=SMALL),
    smoke=Schedule(epochs=1, batch_size=2, learning_rate=0.01, steps_per_epoch=2, eval_batch=2, model=SMALL),
)


def parse_args(argv=None):
    p, m, o = flags.detection_parser(__doc__, "runs/faster_rcnn_coco", SCHEDULES, "faster_rcnn_mobilenet_v1",
                                     "optimizer (config: momentum SGD 0.9, lr 3e-4, batch 1)")
    m.add_argument("--max-proposals", type=int, default=None, help="first-stage proposals (default: the builder's)")
    m.add_argument("--second-stage-batch", type=int, default=None,
                   help="proposals per image trained in the second stage (default: the builder's, "
                        f"the config's; {SMALL['box_sampler']['size']} on the embedded set)")
    m.add_argument("--weight-decay", type=float, default=None,
                   help="L2 (slim convention; default: the builder's; the configs' l2_regularizer "
                        "weights are 0 in the first stage box predictor)")
    o.add_argument("--momentum", type=float, default=0.9)
    return p.parse_args(argv)


def paper_row(plan) -> dict:
    row = f"Faster-RCNN {600 if plan.image_size >= 600 else 300} MobileNet"
    return {row: TABLE_13[row]}


def main(argv=None) -> dict:
    args = parse_args(argv)
    # --help and usage errors answered above; now TensorFlow (quietly) or a TF-free backend.
    from mobilenet_zoo.backend import prepare_backend

    prepare_backend()
    import keras

    from mobilenet_zoo.detection import faster_rcnn_mobilenet_v1
    from mobilenet_zoo.training import detection as recipe

    detector = recipe.DetectionRecipe(
        SCHEDULES, faster_rcnn_mobilenet_v1,
        lambda plan: keras.optimizers.SGD(plan.learning_rate, momentum=args.momentum), paper_row,
        model_kwargs={
            "proposal_layer": None if args.max_proposals is None else {"max_proposals": args.max_proposals},
            "box_sampler": None if args.second_stage_batch is None else {"size": args.second_stage_batch},
            "weight_decay": args.weight_decay},
        record={"second_stage_batch": "box_sampler.size", "max_proposals": "proposal_layer.max_proposals"})
    return recipe.run(detector, flags.run_options(args), flags.detection_data(args),
                      flags.train_flags(args), args.alpha, args.weights, flags.export_options(args))


if __name__ == "__main__":
    main()
