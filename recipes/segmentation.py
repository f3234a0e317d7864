"""DeepLabV3(+) on MobileNet: train, report mIoU, export to TFLite.

    python recipes/segmentation.py                                   # embedded digit masks
    python recipes/segmentation.py --dataset pets --data-dir DIR     # TFDS oxford_iiit_pet
    python recipes/segmentation.py --dataset voc --voc-root VOCdevkit/VOC2012
    python recipes/segmentation.py --smoke                           # mock data, a few steps

Writes model.keras, model.tflite (ArgMax inside with --tflite-argmax),
overlays.png and results.json in --out (the finish step the detection recipes
share, mobilenet_zoo/training/run.py).
"""

from __future__ import annotations

from mobilenet_zoo.training import flags
from mobilenet_zoo.training.schedule import Schedule, Schedules, resolve

# Our choice (Adam 1e-3, batch 8, 160 px): a few minutes on the embedded masks.
SCHEDULES = Schedules(
    full=Schedule(epochs=30, batch_size=8, learning_rate=1e-3, image_size=160),
    embedded=Schedule(epochs=4, batch_size=8, learning_rate=1e-3, image_size=160),
    smoke=Schedule(epochs=1, batch_size=2, learning_rate=1e-3, steps_per_epoch=2, image_size=64),
)


def parse_args(argv=None):
    p = flags.recipe_parser(__doc__)
    d = p.add_argument_group("data")
    d.add_argument("--dataset", choices=["embedded", "pets", "voc"], default="embedded")
    d.add_argument("--data-dir", default=None, help="TFDS data dir (pets)")
    d.add_argument("--voc-root", default=None, help="VOC2012 folder (voc)")
    d.add_argument("--embedded-classes", type=int, choices=[2, 11], default=2,
                   help="embedded set: 2 = background/digit, 11 = background + each digit")
    m = p.add_argument_group("DeepLab head")
    m.add_argument("--output-stride", type=int, default=16, choices=[8, 16, 32])
    m.add_argument("--decoder", action="store_true", help="DeepLabV3+ decoder with a low-level skip")
    m.add_argument("--separable-aspp", action="store_true", help="depthwise separable ASPP branches")
    flags.add_schedule_flags(p, SCHEDULES, "training (Adam)", "Adam learning rate")
    e = p.add_argument_group("export")
    e.add_argument("--tflite-argmax", action="store_true", help="export class ids (ArgMax) instead of logits")
    e.add_argument("--no-tflite", action="store_true")
    flags.add_model_flags(p, image_size=None, image_size_help=SCHEDULES.help("image_size"))
    flags.add_common_flags(p, "runs/segmentation")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    # --help and usage errors answered above; now TensorFlow (quietly) or a TF-free backend.
    from mobilenet_zoo.backend import prepare_backend

    prepare_backend()
    import keras

    from mobilenet_zoo import MobileNetBackbone, presets
    from mobilenet_zoo.segmentation import (
        DeepLabV3,
        MeanIoU,
        PixelAccuracy,
        SegmentationPreprocessor,
        segmentation_loss,
    )
    from mobilenet_zoo.training.run import RunContext, finish, fit
    from mobilenet_zoo.training.segmentation import MaskReport, SegmentationData, choose_data

    run = RunContext.start(flags.run_options(args))
    choice = choose_data(SegmentationData(args.dataset, args.data_dir, args.voc_root, args.embedded_classes),
                         run.smoke)
    print(choice.line, flush=True)
    run.set_seed()
    n = len(choice.train.class_names)
    plan = resolve(SCHEDULES.of(choice.kind), flags.train_flags(args))
    weights = presets.backbone_weights(presets.resolve_weights(args.weights), args.alpha)
    with run.scope():
        backbone = MobileNetBackbone(alpha=args.alpha, output_stride=args.output_stride,
                                     input_shape=(None, None, 3), weights=weights)
        model = DeepLabV3(backbone, n, use_decoder=args.decoder, separable_aspp=args.separable_aspp,
                          preprocessor=SegmentationPreprocessor(plan.image_size, n))
        model.compile(keras.optimizers.Adam(plan.learning_rate), segmentation_loss(),
                      metrics=[MeanIoU(n), PixelAccuracy()])
    fitted = fit(run, model, choice, plan, validate=True)
    results = {"data": choice.description, "classes": choice.train.class_names, "epochs": plan.epochs}
    return finish(run, model, fitted.val, MaskReport(n, plan.image_size), results, flags.export_options(args))


if __name__ == "__main__":
    main()
