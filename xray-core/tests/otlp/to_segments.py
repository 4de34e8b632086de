#!/usr/bin/env python3
"""OTLP spans -> X-Ray segment documents, after the OpenTelemetry collector's X-Ray exporter.

An independent implementation of the span -> segment direction of collector-contrib
`exporter/awsxrayexporter/internal/translator` (segment.go, http.go, cause.go, aws.go, sql.go,
service.go, span_links.go; the version with the semconv-1.38 feature gates, every gate at its
default). It is the reference the Rust mapping (`xray-core/src/otlp/mapping.rs`) is tested
against.

Input (stdin): one payload per line, the base64 of an `ExportTraceServiceRequest` (what follows
`T1S`/`T1U` in a UDP datagram). Output (stdout): a JSON array with one segment document per
span, subsegments not nested: each has its `trace_id`, `id`, `parent_id` and
`"type": "subsegment"`.

Two stages:

* `translate`: what the translator writes, JSON number formatting included (numbers it parses
  or holds as float64 come out as Go writes them: `2.0` as `2`). `--translator-only` stops here.
* `restore` (default): the reader of the Rust mapping's residual. It normalises the
  translator's output (see `normalise`) and applies the residual, the JSON object the mapping
  sends as the metadata namespace `AWS.xray.segment`: keys are JSON pointers into the document,
  values what belongs there (`null`: remove), `json:<pointer>` keys hold JSON text. It reads
  only the translated document, never the span, so what it rebuilds is what arrives at X-Ray.

Stdlib and opentelemetry-proto only.
"""

import base64
import ipaddress
import json
import os
import re
import sys
import unicodedata

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

# ----- translator configuration (exporter defaults) -----

INDEXED_ATTRS = ()  # config `indexed_attributes`
INDEX_ALL_ATTRS = False  # config `index_all_attributes`
LOG_GROUP_NAMES = None  # config `aws_log_groups`
ALLOW_DOT = True  # gate exporter.xray.allowDot (beta: on)
DONT_EMIT_V0_HTTP = False  # gate exporter.awsxray.DontEmitV0HTTPNetworkConventions
EMIT_V1_HTTP = False  # gate exporter.awsxray.EmitV1HTTPNetworkConventions
DONT_EMIT_V0_DB = False  # gate exporter.awsxray.DontEmitV0DBConventions
EMIT_V1_DB = False  # gate exporter.awsxray.EmitV1DBConventions

KIND_INTERNAL = trace_pb2.Span.SPAN_KIND_INTERNAL
KIND_SERVER = trace_pb2.Span.SPAN_KIND_SERVER
KIND_CLIENT = trace_pb2.Span.SPAN_KIND_CLIENT
KIND_PRODUCER = trace_pb2.Span.SPAN_KIND_PRODUCER
KIND_CONSUMER = trace_pb2.Span.SPAN_KIND_CONSUMER
STATUS_ERROR = trace_pb2.Status.STATUS_CODE_ERROR

METADATA_PREFIX = "aws.xray.metadata."
ANNOTATIONS_ATTR = "aws.xray.annotations"
DEFAULT_NS = "default"

# ----- the residual reader (must agree with mapping.rs) -----

RESIDUAL_NAMESPACE = "AWS.xray.segment"
# Attributes the Rust mapping emits that some translator version leaves in metadata.default.
LEFTOVER_KEYS = frozenset(
    """
    aws.account_id aws.dynamodb.table_names aws.operation aws.queue_url aws.region
    aws.request_id aws.service aws.table_name client.address db.connection_string db.name
    db.statement db.system db.user enduser.id http.client_ip http.method http.request.method
    http.response.status_code http.status_code http.url http.user_agent net.peer.ip
    network.peer.address peer.service rpc.system url.full user_agent.original
    aws.xray.annotations
    """.split()
)
# Blocks the translator builds from the resource for every span: a subsegment's own come
# from the residual.
RESOURCE_WIDE_TOP = ("origin", "service")
RESOURCE_WIDE_AWS = ("ec2", "ecs", "eks", "elastic_beanstalk", "cloudwatch_logs", "xray")


# ===== pdata values =====


class V:
    """A pcommon.Value: Go accessors return the zero value for another type."""

    __slots__ = ("t", "v")

    def __init__(self, t, v):
        self.t = t
        self.v = v

    def str(self):
        return self.v if self.t == "str" else ""

    def int(self):
        return self.v if self.t == "int" else 0

    def bool(self):
        return self.v if self.t == "bool" else False

    def double(self):
        return self.v if self.t == "double" else 0.0

    def as_string(self):
        if self.t == "str":
            return self.v
        if self.t == "bool":
            return "true" if self.v else "false"
        if self.t == "int":
            return str(self.v)
        if self.t == "double":
            return go_format_float(self.v)
        if self.t == "empty":
            return ""
        return json.dumps(self.raw(), separators=(",", ":"))

    def raw(self):
        """Value.AsRaw(), as json.Marshal then writes it."""
        if self.t == "slice":
            return [x.raw() for x in self.v]
        if self.t == "map":
            return {k: x.raw() for k, x in self.v.items()}
        if self.t == "bytes":
            return base64.b64encode(self.v).decode("ascii")
        if self.t == "empty":
            return None
        return self.v


def conv(av):
    kind = av.WhichOneof("value")
    if kind == "string_value":
        return V("str", av.string_value)
    if kind == "bool_value":
        return V("bool", av.bool_value)
    if kind == "int_value":
        return V("int", av.int_value)
    if kind == "double_value":
        return V("double", av.double_value)
    if kind == "array_value":
        return V("slice", [conv(x) for x in av.array_value.values])
    if kind == "kvlist_value":
        return V("map", attrs_of(av.kvlist_value.values))
    if kind == "bytes_value":
        return V("bytes", bytes(av.bytes_value))
    return V("empty", None)


def attrs_of(kvs):
    """An attribute map in wire order; Map.Get finds the first of duplicate keys."""
    out = {}
    for kv in kvs:
        out.setdefault(kv.key, conv(kv.value))
    return out


def go_str(s):
    """awsxray.String: nil for an empty string."""
    return s if s != "" else None


def go_format_float(f):
    return json.dumps(go_number(f))


def go_number(f):
    """A float64 as encoding/json writes it, read back by Python."""
    if isinstance(f, float) and f.is_integer() and abs(f) < 1e21:
        return int(f)
    return f


def go_floats(obj):
    """Every float64 of a marshalled document, as Go writes it."""
    if isinstance(obj, bool):
        return obj
    if isinstance(obj, float):
        return go_number(obj)
    if isinstance(obj, list):
        return [go_floats(x) for x in obj]
    if isinstance(obj, dict):
        return {k: go_floats(v) for k, v in obj.items()}
    return obj


def _reject_constant(name):
    raise ValueError(name)


def go_json_object(text):
    """json.Unmarshal into map[string]any: numbers become float64; only an object or null."""
    value = json.loads(
        text,
        parse_int=float,
        parse_float=float,
        parse_constant=_reject_constant,
    )
    if value is not None and not isinstance(value, dict):
        raise ValueError("not an object")
    return value


def go_atoi(s):
    """strconv.Atoi, errors as 0 (as the stack parsers use it)."""
    body = s[1:] if s[:1] in ("+", "-") else s
    if not body or not all("0" <= c <= "9" for c in body):
        return 0
    n = int(body)
    if s[:1] == "-":
        n = -n
    return max(-(1 << 63), min((1 << 63) - 1, n))


def go_lines(text):
    """The lines textproto.Reader.ReadLine returns until EOF."""
    if text == "":
        return []
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def is_ip(s):
    if "%" in s:
        return False
    try:
        ipaddress.ip_address(s)
        return True
    except ValueError:
        return False


def new_id():
    return os.urandom(8).hex()


def trace_id_of(raw):
    b = bytes(raw).rjust(16, b"\0")[:16]
    return "1-" + b[:4].hex() + "-" + b[4:].hex()


def span_id_of(raw):
    b = bytes(raw)
    if len(b) != 8 or b == b"\0" * 8:
        return ""
    return b.hex()


# ===== segment.go =====


def make_segments_from_span(span, res):
    attrs = attrs_of(span.attributes)
    if not is_local_root(attrs):
        seg = make_segment(span, res)
        if (
            span.kind in (KIND_CLIENT, KIND_CONSUMER, KIND_PRODUCER)
            and seg.get("type") is not None
            and seg.get("namespace") is None
            and "aws.remote.service" in attrs
        ):
            seg["namespace"] = "remote"
        return [seg]
    if span.kind in (KIND_SERVER, KIND_INTERNAL):
        seg = make_segment(span, res)
        seg.pop("type", None)
        seg.pop("namespace", None)
        return [seg]
    # A local root that is also a dependency: a service segment and a dependency subsegment.
    service_id = new_id()
    dep_span = trace_pb2.Span()
    dep_span.CopyFrom(span)
    dep_span.parent_span_id = bytes.fromhex(service_id)
    dep = make_segment(dep_span, res)
    dep["type"] = "subsegment"
    if dep.get("namespace") is None:
        dep["namespace"] = "remote"
    if span.kind == KIND_CONSUMER:
        dep.pop("links", None)
    if "aws.remote.service" in attrs:
        dep["name"] = trim_aws_sdk_prefix(attrs["aws.remote.service"].str(), attrs)
    svc_span = trace_pb2.Span()
    svc_span.CopyFrom(span)
    svc_span.span_id = bytes.fromhex(service_id)
    keep = [
        kv
        for kv in svc_span.attributes
        if kv.key
        not in ("aws.remote.service", "aws.remote.operation", "remoteTarget", "K8s.RemoteNamespace")
    ]
    del svc_span.attributes[:]
    svc_span.attributes.extend(keep)
    svc = make_segment(svc_span, res)
    if "aws.local.service" in attrs:
        svc["name"] = attrs["aws.local.service"].str()
    svc.pop("http", None)
    aws = svc.get("aws")
    if aws is not None:
        for key in ("operation", "account_id", "region", "request_id", "queue_url", "table_name", "table_names"):
            aws.pop(key, None)
    for ns_value in (svc.get("metadata") or {}).values():
        if isinstance(ns_value, dict):
            for key in [k for k in ns_value if not k.startswith("otel.resource.")]:
                del ns_value[key]
    svc.pop("type", None)
    svc.pop("namespace", None)
    if span.kind != KIND_CONSUMER:
        svc.pop("links", None)
    return [dep, svc]


def is_local_root(attrs):
    v = attrs.get("aws.span.kind")
    return v is not None and v.str() == "LOCAL_ROOT"


def is_aws_sdk_span(attrs):
    v = attrs.get("rpc.system")
    return v is not None and v.str() == "aws-api"


def trim_aws_sdk_prefix(name, attrs):
    if is_aws_sdk_span(attrs):
        if name.startswith("AWS.SDK."):
            return name[len("AWS.SDK."):]
        if name.startswith("AWS::"):
            return name[len("AWS::"):]
    return name


def make_segment(span, res):
    kind = span.kind
    parent_id = span_id_of(span.parent_span_id)
    seg_type = "subsegment" if kind != KIND_SERVER and parent_id else ""
    store_resource = seg_type == ""
    attributes = attrs_of(span.attributes)
    events = [(e.name, attrs_of(e.attributes), e.time_unix_nano) for e in span.events]

    start = span.start_time_unix_nano / 1e9
    end = span.end_time_unix_nano / 1e9
    http_filtered, http = make_http(attributes, kind, events)
    is_error, is_fault, is_throttle, cause_filtered, cause = make_cause(
        span, attributes, http_filtered, events, res
    )
    origin = determine_origin(res)
    aws_filtered, aws = make_aws(cause_filtered, res)
    service = make_service(res)
    sql_filtered, sql = make_sql(span, aws_filtered)
    additional = add_special_attributes(sql_filtered, attributes)
    user, annotations, metadata = make_xray_attributes(additional, res, store_resource)
    links = make_span_links(span.links)

    name, namespace = "", ""
    if kind == KIND_SERVER and "aws.local.service" in attributes:
        name = attributes["aws.local.service"].str()
    span_kind_attr = attributes.get("aws.span.kind")
    if kind == KIND_INTERNAL and span_kind_attr is not None and span_kind_attr.str() == "LOCAL_ROOT":
        if "aws.local.service" in attributes:
            name = attributes["aws.local.service"].str()
    if kind in (KIND_CLIENT, KIND_PRODUCER, KIND_CONSUMER) and "aws.remote.service" in attributes:
        name = trim_aws_sdk_prefix(attributes["aws.remote.service"].str(), attributes)
    if name == "" and "peer.service" in attributes:
        name = attributes["peer.service"].str()
    if namespace == "" and is_aws_sdk_span(attributes):
        namespace = "aws"
    if name == "" and "aws.service" in attributes:
        name = attributes["aws.service"].str()
        if namespace == "":
            namespace = "aws"
    if name == "" and "db.name" in attributes:
        name = attributes["db.name"].str()
        if "db.connection_string" in attributes:
            host = url_hostname(strip_prefix(attributes["db.connection_string"].str(), "jdbc:"))
            if host:
                name += "@" + host
    if name == "" and kind == KIND_SERVER and "service.name" in res:
        name = res["service.name"].str()
    for key in ("rpc.service", "http.host", "net.peer.name"):
        if name == "" and key in attributes:
            name = attributes[key].str()
    if name == "":
        name = fix_segment_name(span.name)
    if namespace == "" and kind == KIND_CLIENT:
        namespace = "remote"

    seg = {}
    put(seg, "name", name)
    put(seg, "id", go_str(span_id_of(span.span_id)))
    seg["start_time"] = start
    put(seg, "service", service)
    put(seg, "origin", go_str(origin))
    put(seg, "user", go_str(user))
    put(seg, "links", links or None)
    seg["trace_id"] = trace_id_of(span.trace_id)
    seg["end_time"] = end
    put(seg, "http", http)
    seg["fault"] = is_fault
    seg["error"] = is_error
    seg["throttle"] = is_throttle
    put(seg, "cause", cause)
    put(seg, "aws", aws)
    put(seg, "annotations", dict(sorted(annotations.items())) if annotations else None)
    put(seg, "metadata", dict(sorted(metadata.items())) if metadata else None)
    put(seg, "namespace", go_str(namespace))
    put(seg, "parent_id", go_str(parent_id))
    put(seg, "type", go_str(seg_type))
    put(seg, "sql", sql)
    return seg


def put(obj, key, value):
    if value is not None:
        obj[key] = value


def strip_prefix(s, prefix):
    return s[len(prefix):] if s.startswith(prefix) else s


def url_hostname(s):
    """url.Parse(s).Hostname(), or "" where Go finds no host (or fails)."""
    m = re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*:", s)
    rest = s[m.end():] if m else s
    if not rest.startswith("//"):
        return ""
    authority = rest[2:]
    for sep in "/?#":
        authority = authority.split(sep, 1)[0]
    host = authority.rsplit("@", 1)[-1]
    colon = host.rfind(":")
    if colon >= 0 and (host.rfind("]") < colon):
        port = host[colon + 1:]
        if port and not port.isdigit():
            return ""  # url.Parse: invalid port
        host = host[:colon]
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host


def is_segment_name_char(c):
    return (
        c == " "
        or "0" <= c <= "9"
        or unicodedata.category(c).startswith("L")
        or c in "N_.:/%&#=+-@"
    )


def fix_segment_name(name):
    name = "".join(c for c in name if is_segment_name_char(c))
    raw = name.encode("utf-8")
    if len(raw) > 200:
        name = raw[:200].decode("utf-8", errors="replace")
    elif not raw:
        name = "span"
    return name


def fix_annotation_key(key):
    return "".join(
        c if ("0" <= c <= "9" or "A" <= c <= "Z" or "a" <= c <= "z" or (ALLOW_DOT and c == "."))
        else "_"
        for c in key
    )


def determine_origin(res):
    if not res:
        return ""
    provider = res.get("cloud.provider")
    if provider is not None and provider.str() != "aws":
        return ""
    platform = res.get("cloud.platform")
    if platform is None:
        return ""
    p = platform.str()
    if p == "aws_app_runner":
        return "AWS::AppRunner::Service"
    if p == "aws_eks":
        return "AWS::EKS::Container"
    if p == "aws_elastic_beanstalk":
        return "AWS::ElasticBeanstalk::Environment"
    if p == "aws_ecs":
        lt = res.get("aws.ecs.launchtype")
        if lt is None:
            return "AWS::ECS::Container"
        return {"ec2": "AWS::ECS::EC2", "fargate": "AWS::ECS::Fargate"}.get(lt.str(), "AWS::ECS::Container")
    if p == "aws_ec2":
        return "AWS::EC2::Instance"
    return ""


def add_special_attributes(attributes, unfiltered):
    for name in INDEXED_ATTRS:
        if name not in attributes and name in unfiltered:
            attributes[name] = unfiltered[name]
    return attributes


def annotation_value(v):
    if v.t in ("str", "int", "double", "bool"):
        return v.v
    return None


def make_xray_attributes(attributes, res, store_resource):
    user = None
    if "enduser.id" in attributes:
        user = attributes.pop("enduser.id").str()
    if not attributes and (not store_resource or not res):
        return user, None, None
    annotations, metadata, default = {}, {}, {}
    indexed = set() if INDEX_ALL_ATTRS else set(INDEXED_ATTRS)
    keys = attributes.get(ANNOTATIONS_ATTR)
    if keys is not None and keys.t == "slice":
        for item in keys.v:
            if item.t == "str":
                indexed.add(item.as_string())
        del attributes[ANNOTATIONS_ATTR]
    if store_resource:
        for key, value in res.items():
            key = "otel.resource." + key
            anno = annotation_value(value)
            if anno is not None and (INDEX_ALL_ATTRS or key in indexed):
                annotations[fix_annotation_key(key)] = anno
            else:
                raw = value.raw()
                if raw is not None:
                    default[key] = raw
    if INDEX_ALL_ATTRS:
        for key, value in attributes.items():
            anno = annotation_value(value)
            if anno is not None:
                annotations[fix_annotation_key(key)] = anno
    else:
        for key, value in attributes.items():
            if key in indexed:
                anno = annotation_value(value)
                if anno is not None:
                    annotations[fix_annotation_key(key)] = anno
            elif key.startswith(METADATA_PREFIX) and value.t == "str":
                namespace = key[len(METADATA_PREFIX):]
                try:
                    parsed = go_json_object(value.v)
                except ValueError:
                    default[key] = value.v
                    continue
                if namespace.casefold() == DEFAULT_NS:
                    default.update(parsed or {})
                else:
                    metadata[namespace] = parsed
            else:
                raw = value.raw()
                if raw is not None:
                    default[key] = raw
    if default:
        metadata[DEFAULT_NS] = dict(sorted(default.items()))
    return user, annotations, metadata


def make_span_links(links):
    out = []
    for link in links:
        entry = {"trace_id": trace_id_of(link.trace_id), "id": bytes(link.span_id).hex()}
        attrs = attrs_of(link.attributes)
        if attrs:
            entry["attributes"] = {k: v.raw() for k, v in attrs.items()}
        out.append(entry)
    return out


# ===== http.go =====


def make_http(attributes, kind, events):
    filtered = {}
    if not attributes:
        return filtered, None
    request, response, parts = {}, {}, {}
    has_http = has_url = has_peer = False

    def v0(key, value):
        if DONT_EMIT_V0_HTTP:
            filtered[key] = value
            return False
        return True

    for key, value in attributes.items():
        if key in ("http.method", "http.request.method"):
            if key == "http.method" and not v0(key, value):
                continue
            request["method"] = go_str(value.str())
            has_http = True
        elif key == "http.client_ip":
            if v0(key, value):
                request["client_ip"] = go_str(value.str())
                has_http = True
        elif key in ("http.user_agent", "user_agent.original"):
            if key == "http.user_agent" and not v0(key, value):
                continue
            request["user_agent"] = go_str(value.str())
            has_http = True
        elif key in ("http.status_code", "http.response.status_code"):
            if key == "http.status_code" and not v0(key, value):
                continue
            response["status"] = value.int()
            has_http = True
        elif key in ("http.url", "url.full"):
            if key == "http.url" and not v0(key, value):
                continue
            parts["http.url"] = value.str()
            has_http = has_url = True
        elif key in ("http.scheme", "url.scheme"):
            if key == "http.scheme" and not v0(key, value):
                continue
            parts["http.scheme"] = value.str()
            has_http = True
        elif key in ("http.host", "http.server_name"):
            if v0(key, value):
                parts[key] = value.str()
                has_http = has_url = True
        elif key == "http.target":
            if v0(key, value):
                parts[key] = value.str()
                has_http = True
        elif key == "net.host.port":
            if v0(key, value):
                parts[key] = value.str() or str(value.int())
                has_http = True
        elif key in ("host.name", "net.host.name", "net.peer.name"):
            if v0(key, value):
                parts[key] = value.str()
                has_url = True
        elif key == "net.peer.port":
            if v0(key, value):
                parts[key] = value.str() or str(value.int())
        elif key == "net.peer.ip":
            if v0(key, value):
                if request.get("client_ip") is None:
                    request["client_ip"] = go_str(value.str())
                parts[key] = value.str()
                has_url = has_peer = True
        elif key == "network.peer.address":
            if is_ip(value.str()):
                if request.get("client_ip") is None:
                    request["client_ip"] = go_str(value.str())
                has_url = has_peer = True
        elif key == "network.peer.port":
            if EMIT_V1_HTTP:
                parts[key] = value.str() or str(value.int())
            else:
                filtered[key] = value
        elif key == "client.address":
            if is_ip(value.str()):
                request["client_ip"] = go_str(value.str())
        elif key in ("url.path", "url.query"):
            parts[key] = value.str()
            has_http = True
        elif key == "server.address":
            parts[key] = value.str()
            has_url = True
        elif key == "server.port":
            parts[key] = value.str() or str(value.int())
        else:
            filtered[key] = value

    if not has_peer and request.get("client_ip") is not None:
        request["x_forwarded_for"] = True
    if not has_http:
        return filtered, None
    if has_url:
        request["url"] = server_url(parts) if kind == KIND_SERVER else client_url(parts)
    response["content_length"] = response_size(attributes, events)

    req = {}
    for key in ("x_forwarded_for", "method", "url", "user_agent", "client_ip"):
        put(req, key, request.get(key))
    resp = {}
    put(resp, "status", response.get("status"))
    resp["content_length"] = response["content_length"]
    return filtered, {"request": req, "response": resp}


def response_size(attributes, events):
    size = size_of(attributes)
    if size != 0:
        return size
    for _, event_attrs, _ in events:
        size = size_of(event_attrs)
        if size != 0:
            return size
    return size


def size_of(attributes):
    t = attributes.get("message.type")
    if t is not None and t.str() == "RECEIVED":
        if not DONT_EMIT_V0_HTTP and "messaging.message_payload_size_bytes" in attributes:
            return attributes["messaging.message_payload_size_bytes"].int()
        if EMIT_V1_HTTP and "messaging.message.body.size" in attributes:
            return attributes["messaging.message.body.size"].int()
    return 0


def _url_tail(parts, url):
    if "http.target" in parts:
        return url + parts["http.target"]
    url += parts.get("url.path", "/")
    if "url.query" in parts:
        query = parts["url.query"]
        url += query if query.startswith("?") else "?" + query
    return url


def _with_port(scheme, host, port):
    url = scheme + "://" + host
    if port and not (scheme == "http" and port == "80") and not (scheme == "https" and port == "443"):
        url += ":" + port
    return url


def client_url(parts):
    if "http.url" in parts:
        return parts["http.url"]
    scheme = parts.get("http.scheme", "http")
    port = ""
    if "http.host" in parts:
        host = parts["http.host"]
    else:
        if "net.peer.name" in parts:
            host = parts["net.peer.name"]
        elif "net.peer.ip" in parts:
            host = parts["net.peer.ip"]
        else:
            host = parts.get("server.address", "")
        port = parts["net.peer.port"] if "net.peer.port" in parts else parts.get("network.peer.port", "")
    return _url_tail(parts, _with_port(scheme, host, port))


def server_url(parts):
    if "http.url" in parts:
        return parts["http.url"]
    scheme = parts.get("http.scheme", "http")
    port = ""
    if "http.host" in parts:
        host = parts["http.host"]
    else:
        for key in ("http.server_name", "net.host.name", "host.name"):
            if key in parts:
                host = parts[key]
                break
        else:
            host = parts.get("server.address", "")
        port = parts["net.host.port"] if "net.host.port" in parts else parts.get("server.port", "")
    return _url_tail(parts, _with_port(scheme, host, port))


# ===== cause.go =====


def make_cause(span, all_attributes, attributes, events, res):
    status = span.status
    filtered = attributes
    cause = None
    aws_sdk = is_aws_sdk_span(all_attributes)
    has_exceptions = False
    for name, _, _ in events:
        if name == "exception":
            has_exceptions = True
            break
        if aws_sdk and name == "HTTP request failure":
            has_exceptions = True
            break

    if has_exceptions:
        lang = res["telemetry.sdk.language"].str() if "telemetry.sdk.language" in res else ""
        remote = span.kind in (KIND_CLIENT, KIND_PRODUCER)
        exceptions = []
        for name, event_attrs, at in events:
            if name == "exception":
                kind = event_attrs["exception.type"].str() if "exception.type" in event_attrs else ""
                message = event_attrs["exception.message"].str() if "exception.message" in event_attrs else ""
                stack = event_attrs["exception.stacktrace"].str() if "exception.stacktrace" in event_attrs else ""
                exceptions.extend(parse_exception(kind, message, stack, remote, lang))
            elif aws_sdk and name == "HTTP request failure":
                code = event_attrs.get("http.response.status_code")
                msg = event_attrs.get("aws.http.error_message")
                if code is not None and msg is not None:
                    micros = at // 1000
                    text = "@".join([code.as_string(), "%.6f" % (micros / 1_000_000), msg.str()])
                    exceptions.append(
                        {"id": new_id(), "message": text, "type": "aws.http.error.event", "remote": True}
                    )
        cause = {"exceptions": exceptions} if exceptions else {}
    elif status.code == STATUS_ERROR:
        message = status.message
        filtered = {}
        for key, value in attributes.items():
            if key == "http.status_text":
                if message == "":
                    message = value.str()
            else:
                filtered[key] = value
        if message != "":
            cause = {"exceptions": [{"id": new_id(), "message": message, "type": ""}]}

    code_attr = all_attributes.get("http.status_code")
    if code_attr is None:
        code_attr = all_attributes.get("http.response.status_code")
    code = code_attr.int() if code_attr is not None else 0
    is_error = is_fault = is_throttle = False
    if code_attr is None or code < 400 or code > 599:
        is_fault = status.code == STATUS_ERROR
    elif code <= 499:
        is_error = True
        is_throttle = code == 429
    else:
        is_fault = True
    return is_error, is_fault, is_throttle, filtered, cause


def parse_exception(kind, message, stacktrace, remote, lang):
    exceptions = [{"id": new_id(), "message": message, "type": kind, "remote": remote}]
    if stacktrace == "":
        return exceptions
    if lang in ("java", "php"):
        fill_java(stacktrace, exceptions)
    elif lang == "python":
        fill_python(stacktrace, exceptions)
    elif lang in ("javascript", "nodejs", "webjs"):
        fill_javascript(stacktrace, exceptions)
    elif lang == "dotnet":
        fill_dotnet(stacktrace, exceptions)
    elif lang == "go":
        fill_go(stacktrace, exceptions)
    for e in exceptions:
        if not e.get("stack"):
            e.pop("stack", None)
    return exceptions


def _caused(exceptions, exc, kind, message, remote):
    new = {"id": new_id(), "message": message, "type": kind, "remote": remote}
    exceptions.append(new)
    exceptions[-2]["cause"] = new["id"]
    exc["cause"] = new["id"]
    return new


def fill_java(stacktrace, exceptions):
    lines = go_lines(stacktrace)
    if len(lines) < 2:
        return
    exc = exceptions[0]
    remote = exc["remote"]
    exc["stack"] = []
    idx = 1
    line = lines[idx]
    while True:
        if line.startswith("\tat "):
            paren = line.find("(")
            if paren >= 0 and line[-1] == ")":
                label = line[4:paren]
                slash = label.find("/")
                if slash >= 0:
                    label = label[slash + 1:]
                path = line[paren + 1:-1]
                number = 0
                colon = path.find(":")
                if colon >= 0:
                    number = go_atoi(path[colon + 1:])
                    path = path[:colon]
                exc["stack"].append({"path": path, "line": number, "label": label})
        elif line.startswith("Caused by: "):
            kind = line[len("Caused by: "):]
            colon = kind.find(":")
            message = ""
            if colon >= 0:
                message = kind[colon + 2:]
                kind = kind[:colon]
            while True:
                idx += 1
                if idx >= len(lines):
                    line = ""
                    break
                line = lines[idx]
                if line.startswith("\tat ") and "(" in line and line[-1] == ")":
                    break
                message += line
            exc = _caused(exceptions, exc, kind, message, remote)
            exc["stack"] = []
            continue
        idx += 1
        if idx >= len(lines):
            break
        line = lines[idx]


def fill_python(stacktrace, exceptions):
    lines = stacktrace.split("\n")
    idx = len(lines) - 2
    if idx < 0:
        return
    line = lines[idx]
    exc = exceptions[0]
    remote = exc["remote"]
    exc["stack"] = []
    while True:
        if line.startswith("  File "):
            fields = line.split(",")
            if len(fields) == 3:
                file_part = fields[0]
                path = file_part[8:len(file_part) - 1]
                number = go_atoi(fields[1][6:]) if fields[1].startswith(" line ") else 0
                label = fields[2][4:] if fields[2].startswith(" in ") else ""
                exc["stack"].append({"path": path, "line": number, "label": label})
        elif line.startswith("During handling of the above exception, another exception occurred:"):
            nxt = idx - 1
            while True:
                if nxt < 0:
                    return
                if lines[nxt].startswith("  File "):
                    break
                nxt -= 1
            message = "\n".join(lines[nxt + 2:idx - 1])
            idx = nxt
            colon = message.find(":")
            if colon < 0:
                return
            exc = _caused(exceptions, exc, message[:colon], message[colon + 2:], remote)
            exc["stack"] = []
            line = lines[idx]
            continue
        idx -= 1
        if idx < 0:
            break
        line = lines[idx]


def fill_javascript(stacktrace, exceptions):
    lines = go_lines(stacktrace)
    if len(lines) < 2:
        return
    exc = exceptions[0]
    exc["stack"] = []
    for line in lines[1:]:
        if not line.startswith("    at "):
            continue
        paren = line.find("(")
        label, path, number = "", "", 0
        if paren >= 0 and line[-1] == ")":
            label = line[7:paren]
            path = line[paren + 1:-1]
        elif paren < 0:
            path = line[7:]
        first = path.find(":")
        second = -1
        if first >= 0:
            found = path[first + 1:].find(":")
            second = found + first + 1 if found >= 0 else -1
        if first >= 0 and second >= 0 and first != second:
            number = go_atoi(path[first + 1:second])
            path = path[:first]
        elif first < 0 and "native" in path:
            path = "native"
        if path or label or number:
            exc["stack"].append({"path": path, "line": number, "label": label})


def fill_dotnet(stacktrace, exceptions):
    lines = go_lines(stacktrace)
    if len(lines) < 2:
        return
    exc = exceptions[0]
    exc["stack"] = []
    for line in lines[1:]:
        line = line.strip()
        if not line.startswith("at "):
            continue
        if " in " in line:
            fields = line.split(" in ")
            label = fields[0][3:]
            path = fields[1]
            number = 0
            colon = fields[1].rfind(":")
            if colon >= 0:
                text = path[colon + 1:]
                if text.startswith("line"):
                    text = text[5:]
                path = path[:colon]
                number = go_atoi(text)
            exc["stack"].append({"path": path, "line": number, "label": label})
        else:
            close = line.rfind(")")
            if close >= 0:
                exc["stack"].append({"path": "", "line": 0, "label": line[3:close + 1]})


GO_PATH_LINE = re.compile(r"([^:\s]+):(\d+)", re.ASCII)
GO_GOROUTINE = re.compile(r"^goroutine.*\brunning\b.*:$", re.ASCII)


def fill_go(stacktrace, exceptions):
    lines = go_lines(stacktrace)
    if len(lines) < 2:
        return
    exc = exceptions[0]
    exc["stack"] = []
    idx = 1
    line = lines[idx]
    path, number = "", 0

    def read(i):
        return lines[i] if i < len(lines) else ""

    while True:
        if GO_GOROUTINE.match(line):
            idx += 1
            line = read(idx)
        label = line
        idx += 1
        line = read(idx)
        m = GO_PATH_LINE.search(line)
        if m:
            path = m.group(1)
            number = go_atoi(m.group(2))
        exc["stack"].append({"path": path, "line": number, "label": label})
        idx += 1
        if idx >= len(lines):
            break
        line = lines[idx]


# ===== aws.go, service.go, sql.go =====


def normalize_to_slice(value):
    if value.t == "str":
        return [item for item in value.v.split("&") if item != ""]
    if value.t == "slice":
        return [item.str() for item in value.v]
    return []


def parse_log_group(arn):
    fields = arn.split(":")
    return fields[6] if len(fields) >= 7 else arn


def make_aws(attributes, res):
    r = {}
    log_groups = log_group_arns = None
    resource_keys = {
        "cloud.provider": "cloud",
        "cloud.platform": "platform",
        "cloud.account.id": "account",
        "cloud.availability_zone": "zone",
        "host.id": "host_id",
        "host.type": "host_type",
        "host.image.id": "ami",
        "k8s.pod.name": "pod",
        "service.namespace": "namespace",
        "service.instance.id": "deploy_id",
        "service.version": "version_label",
        "telemetry.sdk.name": "sdk_name",
        "telemetry.sdk.language": "sdk_language",
        "telemetry.sdk.version": "sdk_version",
        "telemetry.auto.version": "auto_version",
        "telemetry.distro.version": "auto_version",
        "container.id": "container_id",
        "k8s.cluster.name": "cluster",
        "aws.ecs.cluster.arn": "cluster_arn",
        "aws.ecs.container.arn": "container_arn",
        "aws.ecs.task.arn": "task_arn",
        "aws.ecs.task.family": "task_family",
        "aws.ecs.launchtype": "launch_type",
    }
    for key, value in res.items():
        if key in resource_keys:
            r[resource_keys[key]] = value.str()
        elif key == "container.name":
            if not r.get("container"):
                r["container"] = value.str()
        elif key == "aws.log.group.names":
            log_groups = normalize_to_slice(value)
        elif key == "aws.log.group.arns":
            log_group_arns = normalize_to_slice(value)
    g = lambda k: r.get(k, "")  # noqa: E731

    account = g("account")
    operation = region = request_id = queue_url = table_name = ""
    if "aws.operation" in attributes:
        operation = attributes["aws.operation"].str()
    elif "rpc.method" in attributes:
        operation = attributes["rpc.method"].str()
    filtered = {}
    for key, value in attributes.items():
        if key in ("rpc.method", "aws.operation"):
            pass
        elif key == "aws.account_id":
            if value.t != "empty":
                account = value.str()
        elif key == "aws.region":
            region = value.str()
        elif key in ("aws.request_id", "aws.requestId"):
            request_id = value.str()
        elif key in ("aws.queue_url", "aws.queue.url"):
            queue_url = value.str()
        elif key in ("aws.table_name", "aws.table.name"):
            table_name = value.str()
        else:
            filtered[key] = value
    if g("cloud") not in ("aws", ""):
        return filtered, None

    table_names = None
    if "messaging.url" in attributes:
        queue_url = attributes["messaging.url"].str()
    if "aws.dynamodb.table_names" in attributes:
        value = attributes["aws.dynamodb.table_names"]
        if value.t == "slice":
            if len(value.v) == 1:
                table_name = value.v[0].str()
            elif len(value.v) > 1:
                table_name = ""
                table_names = [item.str() for item in value.v]
        elif value.t == "str":
            table_name = value.v

    platform = g("platform")
    ec2 = ecs = eb = eks = cwl = None
    if platform == "aws_ec2" or g("host_id") != "":
        ec2 = {
            "instance_id": go_str(g("host_id")),
            "availability_zone": go_str(g("zone")),
            "instance_size": go_str(g("host_type")),
            "ami_id": go_str(g("ami")),
        }
    if platform == "aws_ecs":
        ecs = {}
        for key, source in (
            ("container", "container"),
            ("container_id", "container_id"),
            ("task_arn", "task_arn"),
            ("task_family", "task_family"),
            ("cluster_arn", "cluster_arn"),
            ("container_arn", "container_arn"),
            ("availability_zone", "zone"),
            ("launch_type", "launch_type"),
        ):
            put(ecs, key, go_str(g(source)))
    if platform == "aws_elastic_beanstalk" and g("deploy_id") != "":
        try:
            deployment = int(g("deploy_id"), 10)
            if not -(1 << 63) <= deployment < (1 << 63) or not re.fullmatch(r"[+-]?[0-9]+", g("deploy_id")):
                deployment = 0
        except ValueError:
            deployment = 0
        eb = {
            "environment_name": go_str(g("namespace")),
            "version_label": go_str(g("version_label")),
            "deployment_id": deployment,
        }
    if platform == "aws_eks" or g("cluster") != "":
        eks = {
            "cluster_name": go_str(g("cluster")),
            "pod": go_str(g("pod")),
            "container_id": go_str(g("container_id")),
        }
    if log_group_arns:
        cwl = [{"log_group": go_str(parse_log_group(a)), **({"arn": a} if a else {})} for a in log_group_arns]
    elif log_groups:
        cwl = [{"log_group": go_str(n)} for n in log_groups]
    elif LOG_GROUP_NAMES is not None:
        cwl = [{"log_group": go_str(n)} for n in LOG_GROUP_NAMES]

    sdk_name, sdk_language = g("sdk_name"), g("sdk_language")
    sdk = sdk_name + " for " + sdk_language if sdk_name and sdk_language else sdk_name
    xray = {}
    put(xray, "sdk", go_str(sdk))
    put(xray, "sdk_version", go_str(g("sdk_version")))
    xray["auto_instrumentation"] = g("auto_version") != ""

    aws = {}
    put(aws, "elastic_beanstalk", eb)
    put(aws, "cloudwatch_logs", cwl)
    put(aws, "ecs", ecs)
    put(aws, "ec2", ec2)
    put(aws, "eks", eks)
    aws["xray"] = xray
    put(aws, "account_id", go_str(account))
    put(aws, "operation", go_str(operation))
    put(aws, "region", go_str(region))
    put(aws, "request_id", go_str(request_id))
    put(aws, "queue_url", go_str(queue_url))
    put(aws, "table_name", go_str(table_name))
    put(aws, "table_names", table_names or None)
    return filtered, aws


def make_service(res):
    version = res.get("service.version")
    if version is None:
        version = res.get("container.image.tag")
    if version is None:
        return None
    service = {}
    put(service, "version", go_str(version.str()))
    return service


SQL_V0 = ("db2", "mssql", "oracle")
SQL_BOTH = ("derby", "hive", "mariadb", "mysql", "other_sql", "postgresql", "sqlite", "teradata")
SQL_V1 = ("ibm.db2", "microsoft.sql_server", "oracle.db")


def is_sql(system):
    if system in SQL_V0 or system in SQL_BOTH:
        return True
    return system in SQL_V1 and EMIT_V1_DB


def make_sql(span, attributes):
    filtered = {}
    values = {"connection": "", "system": "", "instance": "", "statement": "", "user": ""}
    v1 = {"db.namespace": "instance", "db.system.name": "system", "db.query.text": "statement", "user.name": "user"}
    v0 = {
        "db.connection_string": "connection",
        "db.name": "instance",
        "db.statement": "statement",
        "db.system": "system",
        "db.user": "user",
    }
    for key, value in attributes.items():
        if key in v1:
            if EMIT_V1_DB:
                values[v1[key]] = value.str()
            else:
                filtered[key] = value
        elif key in v0:
            if not DONT_EMIT_V0_DB:
                values[v0[key]] = value.str()
            else:
                filtered[key] = value
        else:
            filtered[key] = value
    if not is_sql(values["system"]):
        return attributes, None
    connection = values["connection"] or "localhost"
    connection = connection + "/" + values["instance"]
    sql = {}
    put(sql, "connection_string", go_str(connection))
    put(sql, "url", go_str(span.name))
    put(sql, "sanitized_query", go_str(values["statement"]))
    put(sql, "database_type", go_str(values["system"]))
    put(sql, "user", go_str(values["user"]))
    return filtered, sql


# ===== the translator, per request =====


def translate(request):
    """Every span of an ExportTraceServiceRequest, as the translator writes it."""
    docs = []
    for resource_spans in request.resource_spans:
        res = attrs_of(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                for seg in make_segments_from_span(span, res):
                    docs.append(go_floats(seg))
    return docs


# ===== restoring what the Rust mapping carried =====


def strip_nulls(obj):
    if isinstance(obj, dict):
        for key in [k for k, v in obj.items() if v is None]:
            del obj[key]
        for value in obj.values():
            strip_nulls(value)
    elif isinstance(obj, list):
        for value in obj:
            strip_nulls(value)


def drop_empty(parent, key):
    if isinstance(parent.get(key), dict) and not parent[key]:
        del parent[key]


def round_micros(t):
    return round(t * 1_000_000) / 1_000_000


def normalise(seg, subsegment):
    """The translator's output with its constant artefacts removed (mapping.rs, layer 3)."""
    for key in ("start_time", "end_time"):
        if isinstance(seg.get(key), (int, float)):
            seg[key] = round_micros(seg[key])
    for flag in ("fault", "error", "throttle"):
        if seg.get(flag) is False:
            del seg[flag]
    if subsegment:
        for key in RESOURCE_WIDE_TOP:
            seg.pop(key, None)
        for key in RESOURCE_WIDE_AWS:
            (seg.get("aws") or {}).pop(key, None)
    aws = seg.get("aws")
    if isinstance(aws, dict):
        strip_nulls(aws)
        xray = aws.get("xray")
        if isinstance(xray, dict) and xray.get("auto_instrumentation") is False:
            del xray["auto_instrumentation"]
        for key in ("ec2", "ecs", "eks", "elastic_beanstalk", "xray"):
            drop_empty(aws, key)
    drop_empty(seg, "aws")
    http = seg.get("http")
    if isinstance(http, dict):
        strip_nulls(http)
        response = http.get("response")
        if isinstance(response, dict) and response.get("content_length") == 0:
            del response["content_length"]
        drop_empty(http, "request")
        drop_empty(http, "response")
    drop_empty(seg, "http")
    for key in ("sql", "service"):
        if isinstance(seg.get(key), dict):
            strip_nulls(seg[key])
        drop_empty(seg, key)
    cause = seg.get("cause")
    if isinstance(cause, dict):
        for exc in cause.get("exceptions", []):
            if exc.get("type") == "":
                del exc["type"]
            if exc.get("message") == "":
                del exc["message"]
            if exc.get("remote") is False:
                del exc["remote"]
    metadata = seg.get("metadata")
    if isinstance(metadata, dict):
        default = metadata.get(DEFAULT_NS)
        if isinstance(default, dict):
            for key in [k for k in default if k in LEFTOVER_KEYS or k.startswith("otel.resource.")]:
                del default[key]
            drop_empty(metadata, DEFAULT_NS)
        drop_empty(seg, "metadata")


def pointer_tokens(pointer):
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise ValueError("bad JSON pointer: " + pointer)
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def set_pointer(doc, pointer, value):
    tokens = pointer_tokens(pointer)
    if not tokens:
        return
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, list):
            index = int(token)
            if not 0 <= index < len(node):
                return
            node = node[index]
            continue
        if not isinstance(node, dict):
            return
        if token not in node or not isinstance(node[token], (dict, list)):
            if value is None:
                return
            node[token] = {}
        node = node[token]
    last = tokens[-1]
    if isinstance(node, list):
        index = int(last)
        if 0 <= index < len(node):
            if value is None:
                del node[index]
            else:
                node[index] = value
        return
    if isinstance(node, dict):
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value


def restore(seg):
    """Applies the residual of the Rust mapping to a translated segment."""
    residual = {}
    metadata = seg.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get(RESIDUAL_NAMESPACE), dict):
        residual = metadata.pop(RESIDUAL_NAMESPACE)
    subsegment = seg.get("type") == "subsegment" or residual.get("/type") == "subsegment"
    normalise(seg, subsegment)
    for key in sorted(residual):
        value = residual[key]
        if key.startswith("json:"):
            key = key[len("json:"):]
            value = json.loads(value)
        set_pointer(seg, key, value)
    return seg


# ===== main =====


def main(argv):
    translator_only = "--translator-only" in argv[1:]
    out = []
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        request = trace_service_pb2.ExportTraceServiceRequest()
        request.ParseFromString(base64.b64decode(line, validate=True))
        for seg in translate(request):
            out.append(seg if translator_only else restore(seg))
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
