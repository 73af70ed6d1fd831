"""gRPC server reflection under both its names: grpc.reflection.v1 and v1alpha.

grpcio-reflection implements v1alpha only (grpc/grpc#38576), while current tools ask for
v1 first and Java has deprecated v1alpha. The two protocols have the same messages under
another package name, so v1 is served by the same servicer, and the v1 file descriptor
(v1alpha's, renamed) is added to the pool so that reflection can describe itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
import grpc.aio
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection as v1alpha
from grpc_reflection.v1alpha import reflection_pb2

V1_PACKAGE = "grpc.reflection.v1"
V1_SERVICE_NAME = f"{V1_PACKAGE}.ServerReflection"
V1_FILE_NAME = "grpc/reflection/v1/reflection.proto"


def _add_v1_descriptor(pool: descriptor_pool.DescriptorPool) -> None:
    try:
        pool.FindFileByName(V1_FILE_NAME)
        return
    except KeyError:
        pass
    file = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(file)
    old_prefix, new_prefix = f".{file.package}.", f".{V1_PACKAGE}."
    file.name, file.package = V1_FILE_NAME, V1_PACKAGE
    for message in file.message_type:
        for field in message.field:
            if field.HasField("type_name"):  # proto2: assigning "" would set it
                field.type_name = field.type_name.replace(old_prefix, new_prefix)
    for service in file.service:
        for method in service.method:
            method.input_type = method.input_type.replace(old_prefix, new_prefix)
            method.output_type = method.output_type.replace(old_prefix, new_prefix)
    pool.AddSerializedFile(file.SerializeToString())


def enable_reflection(service_names: Sequence[str], server: grpc.aio.Server) -> None:
    """Serves reflection (v1 and v1alpha) for `service_names`, health and itself."""
    names = [*service_names, V1_SERVICE_NAME, v1alpha.SERVICE_NAME]
    _add_v1_descriptor(descriptor_pool.Default())
    v1alpha.enable_server_reflection(names, server)
    servicer = v1alpha.aio.ReflectionServicer(names)
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(V1_SERVICE_NAME, {"ServerReflectionInfo": handler})]
    )
