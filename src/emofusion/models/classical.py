"""Classical classifiers on pooled features, registered by name.

All are scikit-learn estimators. The default, `lda`, is `emofusion.models.lda.ShrinkageLDA` with
its shrinkage chosen by an efficient speaker-grouped search inside the training speakers.
"""

from __future__ import annotations

from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.svm import SVC

from emofusion.models.lda import ShrinkageLDA
from emofusion.models.registry import ModelSpec, register


def _spec(name: str, description: str, build, grid=None, weighted: bool = True,
          scale_invariant: bool = False) -> None:
    register(ModelSpec(name=name, description=description, build=build, grid=grid or {},
                       supports_class_weight=weighted, scale_invariant=scale_invariant))


_spec("lda", "Shrinkage LDA, shrinkage searched over speaker-grouped inner folds on an efficient "
      "path (fast strong default)",
      lambda seed, cw: ShrinkageLDA(shrinkage="cv", class_weight=cw), scale_invariant=True)
_spec("lda_lw", "Shrinkage LDA with the analytic Ledoit-Wolf intensity (no search)",
      lambda seed, cw: ShrinkageLDA(shrinkage="auto", class_weight=cw), scale_invariant=True)
_spec("svm", "SVC with probabilities; grid C {0.1,1,10} x kernel {linear,rbf,poly} (course grid)",
      lambda seed, cw: SVC(probability=True, class_weight=cw, random_state=seed),
      {"C": [0.1, 1, 10], "kernel": ["linear", "rbf", "poly"]})
_spec("svm_rbf", "RBF SVC with probabilities; grid C {1,10}",
      lambda seed, cw: SVC(kernel="rbf", probability=True, class_weight=cw, random_state=seed),
      {"C": [1, 10]})
_spec("logreg", "Multinomial logistic regression; grid C {0.01,0.1,1}",
      lambda seed, cw: LogisticRegression(max_iter=2000, class_weight=cw),
      {"C": [0.01, 0.1, 1.0]})
_spec("rf", "Random forest; grid n_estimators {50,100,200} x max_depth {None,10,20} (course grid)",
      lambda seed, cw: RandomForestClassifier(class_weight=cw, random_state=seed, n_jobs=1),
      {"n_estimators": [50, 100, 200], "max_depth": [None, 10, 20]})
_spec("gb", "Histogram gradient boosting; grid learning_rate {0.05,0.1}",
      lambda seed, cw: HistGradientBoostingClassifier(class_weight=cw, random_state=seed),
      {"learning_rate": [0.05, 0.1]})
_spec("knn", "k nearest neighbours; grid k {5,15,31}",
      lambda seed, cw: KNeighborsClassifier(), {"n_neighbors": [5, 15, 31]}, weighted=False)
_spec("mlp_sklearn", "scikit-learn MLP 128-64 with early stopping inside the training data",
      lambda seed, cw: MLPClassifier(hidden_layer_sizes=(128, 64), early_stopping=True,
                                     max_iter=300, random_state=seed),
      {"alpha": [1e-4, 1e-2]}, weighted=False)
