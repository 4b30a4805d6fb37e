"""Send the bad-request cases of bench/reliability_cases.py to a live server and tabulate what came
back: (status name, message) per case as a client sees it, and the markdown table of docs/RELIABILITY.md."""
from __future__ import annotations

import grpc

from bench.bad_inputs import images, tensor
from bench.reliability_cases import MODEL, Case, all_cases
from service.generated.convnet.v1 import convnet_pb2 as pb
from service.generated.convnet.v1 import convnet_pb2_grpc


class Runner:
    """Sends a case to a server and returns (status name, message) as the caller sees them."""

    def __init__(self, channel: grpc.Channel):
        from tritonclient.grpc import service_pb2_grpc

        self.channel = channel
        self.own = convnet_pb2_grpc.ClassifierStub(channel)
        self.kserve = service_pb2_grpc.GRPCInferenceServiceStub(channel)

    def run(self, case: Case) -> tuple[str, str]:
        request = case.make()
        try:
            if case.api == "classify":
                self.own.Classify(request, timeout=30)
            elif case.api == "model-info":
                self.own.GetModelInfo(request, timeout=30)
            elif case.api == "kserve":
                self.kserve.ModelInfer(request, timeout=30)
            elif case.api == "wire":
                method, data = request
                if method.endswith("Stream"):
                    list(self.channel.stream_stream(method)(iter([data]), timeout=30))
                else:
                    self.channel.unary_unary(method)(data, timeout=30)
            else:
                return self._stream(request)
        except grpc.RpcError as exc:
            return exc.code().name, exc.details() or ""
        return "OK", ""

    def _stream(self, bad: pb.ClassifyRequest) -> tuple[str, str]:
        """The bad request between two good ones on one stream: the good ones must still be answered."""
        bad.request_id = "bad"
        good = [pb.ClassifyRequest(model=MODEL, tensor=tensor(images(1, seed=i)), request_id=f"good-{i}") for i in (1, 2)]
        try:
            replies = {r.request_id: r for r in self.own.ClassifyStream(iter([good[0], bad, good[1]]), timeout=30)}
        except grpc.RpcError as exc:  # the transport refused a message: it ends the whole stream
            return exc.code().name, f"{exc.details()} (the whole stream ends)"
        if {"good-1", "good-2"} - set(replies) or any(replies[g.request_id].HasField("error") for g in good):
            return "GOOD-REQUESTS-LOST", str(replies)
        error = replies["bad"].error
        return (error.code_name, error.message) if replies["bad"].HasField("error") else ("OK", "")


def observe(target: str) -> list[tuple[Case, str, str]]:
    with grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
        runner = Runner(channel)
        return [(case, *runner.run(case)) for case in all_cases()]


def cell(text: str, limit: int = 150) -> str:
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + " ..."


def table(observed: list[tuple[Case, str, str]]) -> str:
    rows = ["| API | case | input | expected | observed status | observed message |", "| --- | --- | --- | --- | --- | --- |"]
    for case, code, message in observed:
        mark = "" if code == case.code and all(w in message for w in case.words) else " **(differs)**"
        rows.append(f"| {case.api} | {case.id} | {cell(case.input, 60)} | {case.code} | {code}{mark} | `{cell(message)}` |")
    return "\n".join(rows)
