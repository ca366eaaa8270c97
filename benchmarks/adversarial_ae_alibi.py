"""alibi-detect's AdversarialAE on a workload written by a skadv benchmark (run in alibi-detect's own environment).

Reads ``<workdir>/config.json`` and ``data.npz`` (written by
``benchmarks/adversarial_ae_fidelity.py`` or ``benchmarks/adversarial_ae_seed.py``), rebuilds
the classifier in Keras with the torch weights stored there, trains alibi-detect's
``AdversarialAE`` once per seed in ``config["seeds"]`` and writes ``<workdir>/alibi_result.json``
(fit seconds, scoring rows/s) and ``alibi_<seed>.npz`` (adversarial scores, predictions on
the rows and their reconstructions) for the caller to evaluate.

``config["workload"]``:

- ``"digits-mlp"``: classifier ``Dense(hidden, relu) → Dense(10, softmax)``, autoencoder
  ``64-128-32 / 32-128-64`` with a sigmoid output.
- ``"seed-conv"``: 32×32×3 images (channels last), a small CNN classifier and the
  convolutional autoencoder of alibi-detect's AdversarialAE example (without its L1 kernel
  regularisers, which skadv's step does not have either).

Options in ``config``: ``init`` ``"keras"`` (Keras' own initialisation under the seed) or
``"given"`` (the initial autoencoder weights in ``data.npz``, keys ``ae_<seed>_<i>``, in
Keras layout); ``shuffle_buffer`` (None: alibi-detect's trainer, buffer 1024; an int: the
same trainer with that buffer, e.g. the row count for a full shuffle).

Usage: ``<alibi venv>/bin/python benchmarks/adversarial_ae_alibi.py WORKDIR``.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np


def build_classifier(tf, config, data):
    layers = tf.keras.layers
    if config["workload"] == "digits-mlp":
        model = tf.keras.Sequential(
            [
                layers.InputLayer(shape=(64,)),
                layers.Dense(int(data["clf_0"].shape[1]), activation="relu"),
                layers.Dense(10, activation="softmax"),
            ]
        )
    else:
        model = tf.keras.Sequential(
            [
                layers.InputLayer(shape=(32, 32, 3)),
                layers.Conv2D(32, 3, padding="same", activation="relu"),
                layers.MaxPooling2D(2),
                layers.Conv2D(64, 3, padding="same", activation="relu"),
                layers.MaxPooling2D(2),
                layers.Flatten(),
                layers.Dense(128, activation="relu"),
                layers.Dense(10, activation="softmax"),
            ]
        )
    weights = [data[f"clf_{i}"] for i in range(len(model.weights))]
    model.set_weights(weights)
    return model


def build_autoencoder(tf, config):
    layers = tf.keras.layers
    if config["workload"] == "digits-mlp":
        encoder = tf.keras.Sequential(
            [layers.InputLayer(shape=(64,)), layers.Dense(128, activation="relu"), layers.Dense(32)]
        )
        decoder = tf.keras.Sequential(
            [
                layers.InputLayer(shape=(32,)),
                layers.Dense(128, activation="relu"),
                layers.Dense(64, activation="sigmoid"),
            ]
        )
        return encoder, decoder
    encoder = tf.keras.Sequential(
        [
            layers.InputLayer(shape=(32, 32, 3)),
            layers.Conv2D(32, 4, strides=2, padding="same", activation="relu"),
            layers.Conv2D(64, 4, strides=2, padding="same", activation="relu"),
            layers.Conv2D(256, 4, strides=2, padding="same", activation="relu"),
            layers.Flatten(),
            layers.Dense(40),
        ]
    )
    decoder = tf.keras.Sequential(
        [
            layers.InputLayer(shape=(40,)),
            layers.Dense(4 * 4 * 128, activation="relu"),
            layers.Reshape((4, 4, 128)),
            layers.Conv2DTranspose(256, 4, strides=2, padding="same", activation="relu"),
            layers.Conv2DTranspose(64, 4, strides=2, padding="same", activation="relu"),
            layers.Conv2DTranspose(3, 4, strides=2, padding="same", activation=None),
        ]
    )
    return encoder, decoder


def main(workdir):
    import tensorflow as tf
    from alibi_detect.ad import AdversarialAE
    from alibi_detect.models.tensorflow.losses import loss_adv_ae
    from alibi_detect.models.tensorflow.trainer import trainer

    workdir = Path(workdir)
    config = json.loads((workdir / "config.json").read_text())
    data = np.load(workdir / "data.npz")
    X_train, X_score = data["X_train"], data["X_score"]
    result = {"alibi_detect": __import__("alibi_detect").__version__, "tensorflow": tf.__version__, "seeds": {}}
    for seed in config["seeds"]:
        tf.keras.utils.set_random_seed(seed)
        classifier = build_classifier(tf, config, data)
        encoder, decoder = build_autoencoder(tf, config)
        detector = AdversarialAE(model=classifier, encoder_net=encoder, decoder_net=decoder, threshold=0.0)
        if config.get("init", "keras") == "given":
            detector.ae(X_train[:1])  # builds the weights
            detector.ae.set_weights([data[f"ae_{seed}_{i}"] for i in range(len(detector.ae.weights))])
        optimizer = tf.keras.optimizers.Adam(learning_rate=config["lr"])
        start = time.perf_counter()
        if config.get("shuffle_buffer") is None:
            detector.fit(
                X_train, epochs=config["epochs"], batch_size=config["batch_size"], optimizer=optimizer, verbose=False
            )
        else:  # alibi-detect's trainer and loss, with another shuffle buffer
            trainer(
                detector.ae,
                loss_adv_ae,
                X_train,
                optimizer=optimizer,
                epochs=config["epochs"],
                batch_size=config["batch_size"],
                buffer_size=int(config["shuffle_buffer"]),
                verbose=False,
                loss_fn_kwargs={
                    "model": classifier,
                    "model_hl": None,
                    "w_model": 1.0,
                    "w_recon": 0.0,
                    "w_model_hl": None,
                    "temperature": 1.0,
                },
            )
        fit_s = time.perf_counter() - start
        score_batch = config.get("score_batch_size", int(1e10))
        start = time.perf_counter()
        scores, proba, proba_recon = detector.score(X_score, batch_size=score_batch, return_predictions=True)
        score_s = time.perf_counter() - start
        np.savez(workdir / f"alibi_{seed}.npz", score=scores, pred=proba.argmax(1), pred_recon=proba_recon.argmax(1))
        result["seeds"][str(seed)] = {"fit_s": round(fit_s, 4), "score_rows_per_s": round(len(X_score) / score_s, 1)}
        (workdir / "alibi_result.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1]), indent=2))
