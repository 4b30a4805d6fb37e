"""The KServe v2 / Triton extensions of inference.GRPCInferenceService beyond inference:
statistics (ModelStatistics) and the model repository (RepositoryIndex, RepositoryModelLoad,
RepositoryModelUnload). A mixin of the KServe servicer, which provides ``registry``,
``statistics`` (service.statistics.StatisticsRegistry) and ``control`` (service.control.ModelControl).
"""
from __future__ import annotations

from google.protobuf import json_format

from ..control import ModelControl
from ..generated.inference import grpc_service_pb2 as pb
from ..models import ModelRegistry
from ..statistics import StatisticsRegistry, VersionStatistics
from .status import abort

EXTENSIONS = ("schedule_policy", "statistics", "model_repository")
"""As Triton names them in ServerMetadata; ``model_repository`` only with --model-control explicit."""


def statistics_message(s: VersionStatistics) -> pb.ModelStatistics:
    """The gRPC message of the same figures the HTTP route writes as JSON (one source for both)."""
    return json_format.ParseDict(s.to_dict(), pb.ModelStatistics())


def advertised(control: ModelControl) -> list[str]:
    """The extensions of this section ServerMetadata lists, on either transport."""
    return [e for e in EXTENSIONS if e != "model_repository" or control.mode == "explicit"]


def select_statistics(statistics: StatisticsRegistry, registry: ModelRegistry, name: str,
                      version: str) -> list[VersionStatistics]:
    """The statistics of the ready versions asked for (all models when ``name`` is empty), for
    ModelStatistics and the HTTP ``/stats`` route alike."""
    served = {m.name: [v.version for v in m.versions.values() if v.ready] for m in registry.models.values()}
    return statistics.select(name, version, served)


class ExtensionsMixin:
    """ModelStatistics and the repository RPCs; errors map to statuses as inference's do."""

    def extensions(self) -> list[str]:
        return advertised(self.control)

    async def ModelStatistics(self, request: pb.ModelStatisticsRequest, context) -> pb.ModelStatisticsResponse:
        try:
            found = select_statistics(self.statistics, self.registry, request.name, request.version)
        except Exception as exc:
            await abort(context, exc)
        return pb.ModelStatisticsResponse(model_stats=[statistics_message(s) for s in found])

    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest, context) -> pb.RepositoryIndexResponse:
        try:
            entries = self.control.index(request.repository_name, request.ready)
        except Exception as exc:
            await abort(context, exc)
        Index = pb.RepositoryIndexResponse.ModelIndex
        return pb.RepositoryIndexResponse(models=[Index(name=e.name, version=e.version, state=e.state, reason=e.reason)
                                                  for e in entries])

    async def RepositoryModelLoad(self, request: pb.RepositoryModelLoadRequest, context) -> pb.RepositoryModelLoadResponse:
        try:
            await self.control.load(request.model_name, request.repository_name, dict(request.parameters))
        except Exception as exc:
            await abort(context, exc)
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request: pb.RepositoryModelUnloadRequest,
                                    context) -> pb.RepositoryModelUnloadResponse:
        try:
            await self.control.unload(request.model_name, request.repository_name)
        except Exception as exc:
            await abort(context, exc)
        return pb.RepositoryModelUnloadResponse()
