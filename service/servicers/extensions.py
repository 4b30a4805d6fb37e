"""The KServe v2 / Triton extensions of inference.GRPCInferenceService beyond inference:
statistics (ModelStatistics) and the model repository (RepositoryIndex, RepositoryModelLoad,
RepositoryModelUnload). A mixin of the KServe servicer, which provides ``registry``,
``statistics`` (service.statistics.StatisticsRegistry) and ``control`` (service.control.ModelControl).
"""
from __future__ import annotations

from ..errors import ControlDisabled
from ..generated.inference import grpc_service_pb2 as pb
from ..statistics import Duration, VersionStatistics
from .status import abort

EXTENSIONS = ("schedule_policy", "statistics", "model_repository")
"""As Triton names them in ServerMetadata; ``model_repository`` only with --model-control explicit."""


def _duration(d: Duration) -> pb.StatisticDuration:
    return pb.StatisticDuration(count=d.count, ns=d.ns)


def statistics_message(s: VersionStatistics) -> pb.ModelStatistics:
    return pb.ModelStatistics(
        name=s.model, version=str(s.version), last_inference=s.last_inference,
        inference_count=s.inference_count, execution_count=s.execution_count,
        inference_stats=pb.InferStatistics(
            success=_duration(s.success), fail=_duration(s.fail), queue=_duration(s.queue),
            compute_input=_duration(s.compute_input), compute_infer=_duration(s.compute_infer),
            compute_output=_duration(s.compute_output), cache_hit=pb.StatisticDuration(),
            cache_miss=pb.StatisticDuration()),
        batch_stats=[pb.InferBatchStatistics(batch_size=size, compute_input=_duration(b.compute_input),
                                             compute_infer=_duration(b.compute_infer),
                                             compute_output=_duration(b.compute_output))
                     for size, b in sorted(s.batches.items())])


class ExtensionsMixin:
    """ModelStatistics and the repository RPCs; errors map to statuses as inference's do."""

    def extensions(self) -> list[str]:
        control = getattr(self, "control", None)
        explicit = control is not None and control.mode == "explicit"
        return [e for e in EXTENSIONS if e != "model_repository" or explicit]

    async def ModelStatistics(self, request: pb.ModelStatisticsRequest, context) -> pb.ModelStatisticsResponse:
        try:
            served = {m.name: [v.version for v in m.versions.values() if v.ready]
                      for m in self.registry.models.values()}
            found = self.statistics.select(request.name, request.version, served)
        except Exception as exc:
            await abort(context, exc)
        return pb.ModelStatisticsResponse(model_stats=[statistics_message(s) for s in found])

    def _control(self):
        if getattr(self, "control", None) is None:
            raise ControlDisabled("model control is off (model_control = none); start the server with "
                                  "--model-control explicit to load and unload models")
        return self.control

    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest, context) -> pb.RepositoryIndexResponse:
        try:
            entries = self._control().index(request.repository_name, request.ready)
        except Exception as exc:
            await abort(context, exc)
        Index = pb.RepositoryIndexResponse.ModelIndex
        return pb.RepositoryIndexResponse(models=[Index(name=e.name, version=e.version, state=e.state, reason=e.reason)
                                                  for e in entries])

    async def RepositoryModelLoad(self, request: pb.RepositoryModelLoadRequest, context) -> pb.RepositoryModelLoadResponse:
        try:
            await self._control().load(request.model_name, request.repository_name)
        except Exception as exc:
            await abort(context, exc)
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request: pb.RepositoryModelUnloadRequest,
                                    context) -> pb.RepositoryModelUnloadResponse:
        try:
            await self._control().unload(request.model_name, request.repository_name)
        except Exception as exc:
            await abort(context, exc)
        return pb.RepositoryModelUnloadResponse()
