#!/usr/bin/env python3
"""Other learners on conbool's own features and folds: is the learner or are the features the limit?

    python3 benches/learners.py                      # runs `conbool eval --seed 0` for the files
    python3 benches/learners.py --features F --scores S [--seed N]

`conbool eval --features-out F --scores-out S` writes every message's distinct feature hashes
(the rules' hits included) and the classifier's held-out probability, in the same folds. Each
learner here is trained on four of those folds and scores the fifth; every learner, conbool's
model too, is judged by its score alone (the rules' scores and the bands, which make the
product's verdict, are left out). The learners here see the whole 32-bit hashes, where
conbool's model folds them into 2^16 buckets: no collisions, which can only help them. For
each it prints the spam caught when at most 2, 4, 6 or 10 ham score above the cut-off (pooled
over the folds), and on the foff-milter source alone when at most 1 of its 130 ham does.

Needs numpy, scipy and scikit-learn (`pip install numpy scipy scikit-learn`); LightGBM
(`pip install lightgbm`) adds gradient-boosted trees when it is there. Not run in CI.
"""

import argparse
import csv
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import scipy.sparse as sp
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import BernoulliNB
    from sklearn.svm import LinearSVC
except ImportError as e:
    sys.exit(f"learners.py needs numpy, scipy and scikit-learn ({e}): "
             "pip install numpy scipy scikit-learn")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDS = 5


def load(path):
    """The features file: a row of 0/1 per message over every distinct feature hash."""
    y, src, fold, names, rows, cols, col = [], [], [], [], [], [], {}
    with open(path) as f:
        next(f)
        for i, line in enumerate(f):
            name, label, source, k, features = line.rstrip("\n").split("\t")
            names.append(name)
            y.append(label == "spam")
            src.append(source)
            fold.append(int(k))
            for h in dict.fromkeys(features.split()):
                rows.append(i)
                cols.append(col.setdefault(h, len(col)))
    x = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(y), len(col))
    )
    return x, np.array(y), np.array(src), np.array(fold), names


def caught_at(score, y, most_ham):
    """Spam scoring above the (most_ham + 1)-th highest ham: caught, missed."""
    ham = np.sort(score[~y])[::-1]
    cut = ham[most_ham] if most_ham < len(ham) else -np.inf
    caught = int((score[y] > cut).sum())
    return caught, int(y.sum()) - caught


def row(name, score, y, src):
    cells = []
    for most in (2, 4, 6, 10):
        caught, missed = caught_at(score, y, most)
        cells.append(f"{100 * caught / y.sum():6.2f} % ({missed:3d})")
    foff = src == "foff-milter"
    if foff.any():
        caught, _ = caught_at(score[foff], y[foff], 1)
        cells.append(f"{100 * caught / y[foff].sum():6.1f} %")
    print(f"{name:34s} " + "  ".join(cells), flush=True)


def evidence(x, y):
    """conbool's scale of each feature (the signed root of its naive-Bayes log ratio over the
    ratios' mean magnitude: `evidence` in src/classify/train.rs), and the log ratio itself."""
    spam = np.asarray(x[y].sum(0)).ravel()
    ham = np.asarray(x[~y].sum(0)).ravel()
    ratio = np.log((spam + 1) / (y.sum() + 1)) - np.log((ham + 1) / ((~y).sum() + 1))
    k = spam + ham
    mean = (k * np.abs(ratio)).sum() / k.sum()
    return np.sign(ratio) * np.sqrt(np.abs(ratio) / mean), ratio


def cross_validate(x, y, fold, fit_score):
    """Held-out scores: `fit_score(train_x, train_y, test_x)` per fold."""
    out = np.zeros(len(y))
    for k in range(FOLDS):
        train, test = fold != k, fold == k
        out[test] = fit_score(x[train], y[train], x[test])
    return out


def per_root_n(x, scale=None):
    """Rows scaled by 1/√(features), as conbool's model scores them; with `scale`, each
    feature's input times it."""
    n = np.asarray(x.getnnz(axis=1))
    x = x if scale is None else x.dot(sp.diags(scale))
    return sp.diags(1 / np.sqrt(np.maximum(n, 1))).dot(x).tocsr()


def logistic(c, ham_weight, scaled):
    def fit_score(xt, yt, xs):
        scale = evidence(xt, yt)[0] if scaled else None
        m = LogisticRegression(C=c, max_iter=5000, solver="liblinear")
        m.fit(per_root_n(xt, scale), yt, sample_weight=np.where(yt, 1.0, ham_weight))
        return m.decision_function(per_root_n(xs, scale))

    return fit_score


def svm(c):
    def fit_score(xt, yt, xs):
        return LinearSVC(C=c).fit(per_root_n(xt), yt).decision_function(per_root_n(xs))

    return fit_score


def bernoulli_nb(xt, yt, xs):
    joint = BernoulliNB(alpha=1.0).fit(xt, yt).predict_joint_log_proba(xs)
    return joint[:, 1] - joint[:, 0]


def evidence_sum(xt, yt, xs):
    return per_root_n(xs).dot(evidence(xt, yt)[1])


def trees(lgb):
    def fit_score(xt, yt, xs):
        # Features in at least 3 training messages (the rest only slow the trees down).
        keep = np.where(np.asarray(xt.sum(0)).ravel() >= 3)[0]
        m = lgb.LGBMClassifier(
            verbose=-1,
            scale_pos_weight=1 / 8,
            num_leaves=31,
            learning_rate=0.05,
            n_estimators=1000,
            min_child_samples=3,
            colsample_bytree=0.2,
        )
        m.fit(xt[:, keep], yt)
        return m.predict(xs[:, keep], raw_score=True)

    return fit_score


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--features", help="`conbool eval --features-out` file")
    ap.add_argument("--scores", help="`conbool eval --scores-out` file of the same folds")
    ap.add_argument("--seed", default="0", help="the scores file's seed to compare with")
    ap.add_argument("--labels", default=os.path.join(ROOT, "../shared/corpus/labels.tsv"))
    args = ap.parse_args()
    if not args.features or not args.scores:
        work = tempfile.mkdtemp()
        args.features = os.path.join(work, "features.tsv")
        args.scores = os.path.join(work, "scores.tsv")
        subprocess.run(
            ["cargo", "run", "--release", "--quiet", "--", "eval", "--labels", args.labels,
             "--internal-hosts", os.path.join(ROOT, "benches/corpus-internal-hosts.txt"),
             "--folds", str(FOLDS), "--seed", args.seed,
             "--features-out", args.features, "--scores-out", args.scores],
            cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
        )
    x, y, src, fold, names = load(args.features)
    if fold.max() + 1 != FOLDS:
        sys.exit(f"{args.features}: {fold.max() + 1} folds, this script compares {FOLDS}")
    with open(args.scores) as f:
        product = {
            r["path"]: float(r["probability"])
            for r in csv.DictReader(f, delimiter="\t")
            if r["seed"] == args.seed
        }
    p = np.clip(np.array([product[n] for n in names]), 1e-300, 1 - 1e-16)
    conbool = np.log(p) - np.log1p(-p)
    print(f"{len(y)} messages, {x.shape[1]} distinct features, {x.nnz / len(y):.0f} a message")
    print(f"{'spam caught (missed) with at most':34s} " + "  ".join(
        f"{f'{k} ham':>14s}" for k in (2, 4, 6, 10)) + "  foff-milter, 1 ham")
    row(f"conbool's model (seed {args.seed})", conbool, y, src)
    plain = cross_validate(x, y, fold, logistic(1e4, 8, False))
    row("logistic regression C=1e4, ham 8", plain, y, src)
    scaled = cross_validate(x, y, fold, logistic(1e4, 8, True))
    row("the same, inputs x NB evidence", scaled, y, src)
    row("linear SVM C=1", cross_validate(x, y, fold, svm(1.0)), y, src)
    row("Bernoulli naive Bayes", cross_validate(x, y, fold, bernoulli_nb), y, src)
    row("sum of NB log ratios / sqrt(n)", cross_validate(x, y, fold, evidence_sum), y, src)
    try:
        import lightgbm
    except ImportError:
        print("(no lightgbm: pip install lightgbm for gradient-boosted trees)")
        return
    boosted = cross_validate(x, y, fold, trees(lightgbm))
    row("LightGBM (31 leaves, 1,000 trees)", boosted, y, src)
    for a in (0.3, 1.0):
        blend = np.clip(conbool, -50, 50) + a * boosted
        row(f"conbool + {a} x LightGBM log-odds", blend, y, src)


if __name__ == "__main__":
    main()
