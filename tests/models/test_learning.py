"""Learning on the built-in datasets, the way the course does it, within seconds."""

import math

import pytest

from models import Network, load_dataset, train, train_val_split

pytestmark = pytest.mark.slow


def test_logistic_regression_learns_faces_to_90_percent_validation_accuracy():
    ds = load_dataset("faces")
    X, Y, X_val, Y_val = train_val_split(ds.X, ds.Y, 0.25, seed=1)
    net = Network([ds.n_x, 1], output="sigmoid", init="zeros")  # the seed's model
    history = train(
        net, X, Y, optimizer="gd", learning_rate=0.005, epochs=2000, X_val=X_val, Y_val=Y_val
    )
    assert history["cost"][0] == pytest.approx(math.log(2), abs=1e-6)  # float32
    assert history["cost"][-1] < 0.25
    assert float((net.predict(X_val) == Y_val).mean()) >= 0.90


def test_two_hidden_layer_network_learns_digits_to_95_percent_validation_accuracy():
    ds = load_dataset("digits")
    X, Y, X_val, Y_val = train_val_split(ds.X, ds.Y, 0.25, seed=1)
    net = Network([ds.n_x, 64, 32, 10], hidden_activation="relu", output="softmax", seed=1)
    train(net, X, Y, optimizer="adam", learning_rate=0.01, epochs=30, batch_size=32)
    assert float((net.predict(X_val) == Y_val).mean()) >= 0.95
