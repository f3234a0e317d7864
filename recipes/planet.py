"""PlaNet-style geolocation with MobileNet (paper Table 11): classify a photo into one
of many S2 cells of the globe, predict the cell's centre, score great-circle errors.

    python recipes/planet.py --csv photos.csv --image-root DIR   # columns: path,lat,lon
    python recipes/planet.py --tfds NAME --data-dir DIR --lat-key latitude --lon-key longitude
    python recipes/planet.py --smoke                             # generated CSV of real photos

Cells: adaptive S2 partition by photo density (split above --max-photos, drop
below --min-photos). Reports the fraction of test photos within 1, 25, 200, 750
and 2500 km beside Table 11.
"""

from __future__ import annotations

import csv
import os

from mobilenet_zoo.training import flags

TABLE_11 = {"PlaNet": [8.4, 24.5, 37.6, 53.6, 71.3], "PlaNet MobileNet": [8.5, 24.8, 34.3, 51.2, 66.8]}


def parse_args(argv=None):
    p = flags.recipe_parser(__doc__)
    data = p.add_argument_group("data: geotagged photos, from a CSV or TFDS")
    src = data.add_mutually_exclusive_group()
    src.add_argument("--csv", help="CSV with columns path, lat, lon (header row)")
    src.add_argument("--tfds", help="a TFDS dataset with an image and latitude/longitude fields")
    data.add_argument("--image-root", default="", help="prefix for relative CSV paths")
    data.add_argument("--data-dir", default=None)
    data.add_argument("--lat-key", default="latitude")
    data.add_argument("--lon-key", default="longitude")
    p.add_argument("--test-fraction", type=float, default=0.1)
    p.add_argument("--min-photos", type=int, default=50, help="drop cells with fewer photos (PlaNet t_min)")
    p.add_argument("--max-photos", type=int, default=10000, help="split cells with more (PlaNet t_max)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    flags.add_learning_rate_flag(p, 1e-3, "Adam learning rate")
    flags.add_model_flags(p, image_size=224)
    flags.add_common_flags(p, "runs/planet")
    return p.parse_args(argv)


def smoke_csv(out_dir: str, n: int = 48, seed: int = 0) -> str:
    """Real photos (scikit-image) at deterministic coordinates around 4 cities."""
    import numpy as np
    from PIL import Image
    from skimage import data as skdata

    photos = [skdata.astronaut(), skdata.chelsea(), skdata.coffee(), skdata.rocket()]
    cities = [(48.86, 2.35), (40.71, -74.0), (35.68, 139.69), (-33.87, 151.21)]
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(out_dir, "smoke_images"), exist_ok=True)
    path = os.path.join(out_dir, "smoke.csv")
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "lat", "lon"])
        for i in range(n):
            k = i % 4
            img = os.path.join(out_dir, "smoke_images", f"{i}.jpg")
            Image.fromarray(photos[k]).resize((64, 64)).save(img)
            lat, lon = np.array(cities[k]) + rng.normal(0, 0.5, 2)
            w.writerow([img, f"{lat:.5f}", f"{lon:.5f}"])
    return path


def read_csv(path: str, root: str):
    import numpy as np

    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    missing = {"path", "lat", "lon"} - set(rows[0] if rows else {})
    if missing:
        raise SystemExit(f"error: {path} needs columns path, lat, lon; missing {sorted(missing)}")
    paths = [os.path.join(root, r["path"]) for r in rows]
    return paths, np.array([float(r["lat"]) for r in rows]), np.array([float(r["lon"]) for r in rows])


def main(argv=None) -> dict:
    args = parse_args(argv)
    # --help and usage errors answered above; now TensorFlow (quietly) or a TF-free backend.
    from mobilenet_zoo.backend import prepare_backend

    prepare_backend()
    import keras
    import numpy as np
    import tensorflow as tf

    from mobilenet_zoo import MobileNetBackbone, MobileNetClassifier, presets
    from mobilenet_zoo.training import run as training
    from mobilenet_zoo.training.geo import adaptive_cells, fraction_within, great_circle_km

    if args.smoke:
        args.min_photos, args.max_photos, args.epochs, args.batch_size, args.image_size = 2, 8, 1, 8, 64
    run = training.RunContext.start(training.run_options(args))
    if args.smoke:  # photos written into this worker's folder, their CSV named in the run's flags
        args.csv = run.flags["csv"] = smoke_csv(run.out_dir)
    if args.tfds:
        from mobilenet_zoo.data.tfds_utils import load_split

        ds = load_split(args.tfds, "train", args.data_dir)
        coords = np.array([(float(a), float(b)) for a, b in ds.map(
            lambda ex: (ex[args.lat_key], ex[args.lon_key])).as_numpy_iterator()])
        lats, lons = coords[:, 0], coords[:, 1]
        images = ds.map(lambda ex: ex["image"])
        line = f"data: TFDS {args.tfds}"
    elif args.csv:
        paths, lats, lons = read_csv(args.csv, args.image_root)
        images = tf.data.Dataset.from_tensor_slices(paths).map(
            lambda p: tf.io.decode_image(tf.io.read_file(p), channels=3, expand_animations=False),
            num_parallel_calls=tf.data.AUTOTUNE)
        line = f"data: CSV {args.csv}" + (" (--smoke: generated from scikit-image photos)" if args.smoke else "")
    else:
        raise SystemExit("error: give --csv PATH or --tfds NAME (or --smoke)")
    print(line, flush=True)
    n = len(lats)
    order = np.random.default_rng(args.seed).permutation(n)
    test_idx = np.sort(order[: max(1, int(n * args.test_fraction))])
    is_test = np.zeros(n, bool)
    is_test[test_idx] = True
    cells = adaptive_cells(lats[~is_test], lons[~is_test], args.min_photos, args.max_photos)
    labels = cells.assign(lats, lons)
    print(f"{len(cells)} S2 cells (levels {min(cells.levels)}-{max(cells.levels)}) from {(~is_test).sum()} "
          f"training photos", flush=True)
    run.set_seed()
    size = args.image_size
    table = tf.data.Dataset.from_tensor_slices((labels, is_test))
    data = tf.data.Dataset.zip((images, table)).map(
        lambda im, t: (tf.image.resize(tf.cast(im, tf.float32), (size, size)), t[0], t[1]),
        num_parallel_calls=tf.data.AUTOTUNE)
    train = data.filter(lambda x, y, t: tf.logical_and(tf.logical_not(t), y >= 0)).map(
        lambda x, y, t: (x, y)).shuffle(1000, seed=args.seed).batch(args.batch_size).prefetch(2)
    test = data.filter(lambda x, y, t: t).map(lambda x, y, t: x).batch(args.batch_size)
    weights = presets.resolve_weights(args.weights)
    with run.scope():
        model = MobileNetClassifier(
            MobileNetBackbone(alpha=args.alpha, input_shape=(size, size, 3), weights=weights),
            num_classes=len(cells), include_preprocessing=True)
        model.compile(keras.optimizers.Adam(args.learning_rate), "sparse_categorical_crossentropy",
                      metrics=["accuracy"])
    model.fit(train, epochs=args.epochs, verbose=run.verbose, callbacks=run.callbacks())
    predicted = np.concatenate([np.argmax(model.predict_on_batch(x), -1) for x in test])
    guess = cells.centers[predicted]
    errors = great_circle_km(lats[is_test], lons[is_test], guess[:, 0], guess[:, 1])
    within = fraction_within(errors)
    run.save_model(model)
    results = {"data": line.removeprefix("data: "), "num_cells": len(cells), "cells": cells.tokens, "test_photos": int(is_test.sum()),
               "within": within, "median_error_km": float(np.median(errors)), "paper_table_11": TABLE_11,
               "args": run.flags}
    summary = ("within 1/25/200/750/2500 km: " + " / ".join(f"{100 * v:.1f}%" for v in within.values())
               + f"  (paper PlaNet MobileNet: {' / '.join(map(str, TABLE_11['PlaNet MobileNet']))} %)")
    return run.write_results(results, summary)


if __name__ == "__main__":
    main()
