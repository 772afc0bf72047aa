"""REST API of procedures and the queue (DRF). Every answer carries ``success`` and ``msg`` (as
bluesky-queueserver's do); a refusal changes nothing and says why. Astronomers read, operators act."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from procedures import selectors, services
from procedures.services import QueueError
from user_manager.roles import IsOperator, IsValidatedUser

ANSWER = OpenApiResponse(OpenApiTypes.OBJECT, description='{"success": bool, "msg": str, ...}')
RESPONSES = {200: ANSWER, 400: ANSWER, 403: OpenApiResponse(description="not an operator"), 404: ANSWER, 409: ANSWER}


def ok(msg: str = "", **data) -> Response:
    return Response({"success": True, "msg": msg, **data})


def refused(exc: QueueError) -> Response:
    body = {"success": False, "msg": exc.message}
    if exc.errors:
        body["errors"] = exc.errors
    return Response(body, status=exc.status)


def _by(request) -> str:
    return getattr(request.user, "email", "") or str(request.user)


class ItemIn(serializers.Serializer):
    procedure = serializers.CharField(max_length=100)
    params = serializers.JSONField(required=False, default=dict, help_text="name: value (validated by the schema)")
    timeout_s = serializers.FloatField(required=False, allow_null=True)
    pos = serializers.CharField(required=False, allow_blank=True, help_text="front, back or an index")
    before_uid = serializers.UUIDField(required=False, allow_null=True)
    after_uid = serializers.UUIDField(required=False, allow_null=True)


class BatchIn(serializers.Serializer):
    items = serializers.ListField(child=serializers.JSONField(), help_text="[{procedure, params, timeout_s}, ...]")


class MoveIn(serializers.Serializer):
    uid = serializers.UUIDField()
    pos = serializers.CharField(required=False, allow_blank=True)
    before_uid = serializers.UUIDField(required=False, allow_null=True)
    after_uid = serializers.UUIDField(required=False, allow_null=True)


class UidIn(serializers.Serializer):
    uid = serializers.UUIDField()


class EditIn(serializers.Serializer):
    uid = serializers.UUIDField()
    params = serializers.JSONField(required=False)
    procedure = serializers.CharField(required=False, max_length=100)
    timeout_s = serializers.FloatField(required=False, allow_null=True)


class PauseIn(serializers.Serializer):
    when = serializers.ChoiceField(choices=["deferred", "immediate"], default="deferred")


class EnvIn(serializers.Serializer):
    action = serializers.ChoiceField(choices=["open", "close", "restart"])


class BlockIn(serializers.Serializer):
    minutes = serializers.FloatField(help_text="0 closes the block")


def _valid(serializer_class, request):
    data = serializer_class(data=request.data)
    if not data.is_valid():
        raise QueueError("invalid request: " + "; ".join(f"{k}: {' '.join(map(str, v))}" for k, v in data.errors.items()),
                         errors=data.errors)
    return data.validated_data


class ProcedureListApi(APIView):
    permission_classes = [IsAuthenticated, IsValidatedUser]

    @extend_schema(operation_id="procedures_list",
                   summary="Procedures and their parameters (JSON schema), modules with their load errors",
                   responses={200: ANSWER})
    def get(self, request):
        return ok(**selectors.procedure_list())


class ProcedureDetailApi(APIView):
    permission_classes = [IsAuthenticated, IsValidatedUser]

    @extend_schema(summary="One procedure", responses={200: ANSWER, 404: ANSWER})
    def get(self, request, name: str):
        proc = selectors.procedure_get(name)
        if proc is None:
            return Response({"success": False, "msg": f"unknown procedure {name!r}"}, status=404)
        return ok(procedure=selectors.procedure_json(proc))


class ProcedureChangesApi(APIView):
    permission_classes = [IsAuthenticated, IsOperator]

    @extend_schema(summary="Detect changes: modules added, modified or removed on disk since the last reload",
                   responses={200: ANSWER})
    def get(self, request):
        changes = services.procedures_detect_changes()
        n = len(changes["added"]) + len(changes["modified"]) + len(changes["removed"])
        return ok(f"{n} module(s) changed" if n else "no change", changes=changes)


class ProcedureReloadApi(APIView):
    permission_classes = [IsAuthenticated, IsOperator]

    @extend_schema(summary="Reload the procedure modules", request=None, responses=RESPONSES)
    def post(self, request):
        try:
            result = services.procedures_reload(by=_by(request))
        except QueueError as exc:
            return refused(exc)
        msg = f"{len(result['procedures'])} procedure(s) loaded"
        if result["errors"]:
            msg += f"; errors in {', '.join(sorted(result['errors']))}"
        return ok(msg, **result)


class QueueApi(APIView):
    permission_classes = [IsAuthenticated, IsValidatedUser]

    @extend_schema(summary="The queue: state, environment, running item (with its log), items, latest history",
                   responses={200: ANSWER})
    def get(self, request):
        return ok(**selectors.queue_status())


class QueueItemApi(APIView):
    permission_classes = [IsAuthenticated, IsValidatedUser]

    @extend_schema(summary="One item (queued, running or in the history) with its log and, for a flow, its steps "
                           "(state, timestamps, published data) as a tree", responses={200: ANSWER,
                                                                                                   404: ANSWER})
    def get(self, request, uid):
        item = selectors.item_detail(uid)
        if item is None:
            return Response({"success": False, "msg": f"no queue item {uid}"}, status=404)
        return ok(item=selectors.item_json(item, log=True), flow=selectors.flow_json(item))


class HistoryApi(APIView):
    permission_classes = [IsAuthenticated, IsValidatedUser]

    @extend_schema(summary="History: ended items with outcome, duration, published data and log",
                   parameters=[OpenApiParameter("limit", int), OpenApiParameter("offset", int),
                               OpenApiParameter("status", str),
                               OpenApiParameter("log", bool, description="false: without each item's log")],
                   responses={200: ANSWER})
    def get(self, request):
        def number(name, default, top):
            value = request.query_params.get(name, "")
            return min(int(value), top) if value.isdigit() and len(value) < 7 else default

        log = request.query_params.get("log", "true").lower() not in ("0", "false", "no", "off")
        return ok(**selectors.history_list(limit=number("limit", 50, 500), offset=number("offset", 0, 10**6),
                                           status=request.query_params.get("status", "")[:10], log=log))


def _command(action: str, request) -> Response:
    by = _by(request)
    if action == "items":
        d = _valid(ItemIn, request)
        item = services.queue_item_add(procedure=d["procedure"], params=d.get("params"), by=by,
                                       timeout_s=d.get("timeout_s"), pos=d.get("pos"),
                                       before_uid=d.get("before_uid"), after_uid=d.get("after_uid"))
        return ok(f"{item.procedure} queued", item=selectors.item_json(item))
    if action == "batch":
        items = services.queue_batch_add(items=_valid(BatchIn, request)["items"], by=by)
        return ok(f"{len(items)} item(s) queued", items=[selectors.item_json(i) for i in items])
    if action == "move":
        d = _valid(MoveIn, request)
        item = services.queue_item_move(uid=d["uid"], pos=d.get("pos"), before_uid=d.get("before_uid"),
                                        after_uid=d.get("after_uid"))
        return ok("moved", item=selectors.item_json(item))
    if action == "remove":
        item = services.queue_item_remove(uid=_valid(UidIn, request)["uid"])
        return ok(f"{item.procedure} removed")
    if action == "edit":
        d = _valid(EditIn, request)
        item = services.queue_item_edit(uid=d["uid"], params=d.get("params"), procedure=d.get("procedure"),
                                        timeout_s=d.get("timeout_s"))
        return ok("edited", item=selectors.item_json(item))
    if action == "clear":
        return ok(f"{services.queue_clear()} item(s) removed")
    if action == "start":
        services.queue_start(by=by)
        return ok("queue started")
    if action == "stop":
        running = selectors.running_item_name()
        services.queue_stop(by=by)
        return ok(f"queue stopped: {running} finishes, no other item starts" if running else "queue stopped")
    if action == "pause":
        when = _valid(PauseIn, request)["when"]
        running = selectors.running_item_name()
        services.queue_pause(when=when, by=by)
        if not running:
            return ok("queue paused (no item was running)")
        return ok(f"queue paused: {running} is stopped now and queued again at the front" if when == "immediate"
                  else f"queue pauses after {running}, the running item")
    if action == "resume":
        services.queue_resume(by=by)
        return ok("queue resumed")
    if action == "abort":
        item = services.queue_abort(by=by)
        return ok(f"abort of {item.procedure} requested")
    if action == "environment":
        env_action = _valid(EnvIn, request)["action"]
        services.queue_environment(action=env_action, by=by)
        return ok(f"environment {env_action} requested")
    if action == "block":
        state = services.queue_block(minutes=_valid(BlockIn, request)["minutes"], by=by)
        return ok(f"procedure block open until {state.block_until:%Y-%m-%d %H:%M:%S} UTC" if state.block_until
                  else "procedure block closed", block_until=state.block_until.isoformat() if state.block_until else None)
    if action == "requeue":
        item = services.history_requeue(uid=_valid(UidIn, request)["uid"], by=by)
        return ok(f"{item.procedure} queued again", item=selectors.item_json(item))
    if action == "recover":
        item = services.queue_item_recover(uid=_valid(UidIn, request)["uid"], by=by)
        return ok(f"recovery of {item.procedure} queued at the front: the steps that succeeded are not run again",
                  item=selectors.item_json(item))
    raise QueueError(f"unknown command {action!r}", status=404)


REQUESTS = {"items": ItemIn, "batch": BatchIn, "move": MoveIn, "remove": UidIn, "edit": EditIn, "clear": None,
            "start": None, "stop": None, "pause": PauseIn, "resume": None, "abort": None, "environment": EnvIn,
            "block": BlockIn, "requeue": UidIn, "recover": UidIn}


def command_view(action: str):
    class QueueCommandApi(APIView):
        permission_classes = [IsAuthenticated, IsOperator]

        @extend_schema(summary=f"Queue command: {action}", request=REQUESTS[action], responses=RESPONSES,
                       operation_id=f"queue_{action}")
        def post(self, request):
            try:
                return _command(action, request)
            except QueueError as exc:
                return refused(exc)

    QueueCommandApi.__name__ = f"Queue{action.capitalize()}Api"
    return QueueCommandApi



