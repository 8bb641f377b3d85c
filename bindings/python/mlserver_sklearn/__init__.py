"""SKLearnModel: scikit-learn models as MLServer's sklearn runtime serves them.

Loads model.joblib, model.pickle or model.pkl (or parameters.uri) with
joblib. Answers output "predict" by default; a request may ask for
"predict_proba", "predict_log_proba", "decision_function" or "transform"
instead or as well. Each output is the method's result, encoded with
NumpyCodec (content type np; a 1-d result becomes a column [N, 1]), or with
PandasCodec when the method returns a DataFrame.

The request is decoded by its content type (the request's, then the
settings'), by default as one numpy tensor; "pd" makes the inputs the columns
of a DataFrame, for models fitted on DataFrames.
"""
from mlserver import MLModel
from mlserver.codecs import NumpyCodec, NumpyRequestCodec, PandasCodec
from mlserver.errors import InferenceError
from mlserver.types import InferenceResponse, RequestOutput
from mlserver.utils import get_model_uri

WELLKNOWN_MODEL_FILENAMES = ["model.joblib", "model.pickle", "model.pkl"]
PREDICT_OUTPUT = "predict"
PREDICT_PROBA_OUTPUT = "predict_proba"
VALID_OUTPUTS = [PREDICT_OUTPUT, PREDICT_PROBA_OUTPUT, "predict_log_proba",
                 "decision_function", "transform"]


class SKLearnModel(MLModel):
    async def load(self):
        import joblib

        model_uri = await get_model_uri(self._settings, wellknown_filenames=WELLKNOWN_MODEL_FILENAMES)
        self._model = joblib.load(model_uri)
        self.ready = True
        return self.ready

    async def predict(self, payload):
        outputs = payload.outputs or [RequestOutput(name=PREDICT_OUTPUT)]
        for out in outputs:
            if out.name not in VALID_OUTPUTS:
                raise InferenceError(
                    f"SKLearnModel only supports {', '.join(VALID_OUTPUTS)} as outputs "
                    f"({out.name} was received)")
        if len(payload.inputs) != 1 and self._request_content_type(payload) != "pd":
            raise InferenceError("SKLearnModel only supports a single input tensor "
                                 f"({len(payload.inputs)} were received); send content type pd "
                                 "for a DataFrame")
        model_input = self.decode_request(payload, default_codec=NumpyRequestCodec)
        responses = []
        for out in outputs:
            method = getattr(self._model, out.name, None)
            if method is None:
                raise InferenceError(f"this {type(self._model).__name__} has no {out.name}")
            y = method(model_input)
            if PandasCodec.can_encode(y):
                responses.extend(PandasCodec.encode_response(self.name, y).outputs)
            else:
                responses.append(self.encode(y, out, default_codec=NumpyCodec))
        return InferenceResponse(model_name=self.name, model_version=self.version,
                                 outputs=responses)

    def _request_content_type(self, payload):
        ct = payload.parameters.content_type if payload.parameters else None
        if ct is None and self._settings.parameters is not None:
            ct = self._settings.parameters.content_type
        return ct
