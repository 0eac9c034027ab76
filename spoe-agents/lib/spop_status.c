/*
 * spop_status.c — names of SPOP status codes and frame types, for logs.
 */
#include "spop.h"

/* Returns a short text for a DISCONNECT status code; never NULL. */
const char *spop_status_str(enum spop_status st)
{
	switch (st) {
	case SPOP_ST_NORMAL:             return "normal";
	case SPOP_ST_IO:                 return "I/O error";
	case SPOP_ST_TIMEOUT:            return "a timeout occurred";
	case SPOP_ST_TOO_BIG:            return "frame is too big";
	case SPOP_ST_INVALID:            return "invalid frame received";
	case SPOP_ST_NO_VSN:             return "version value not found";
	case SPOP_ST_NO_FRAME_SIZE:      return "max-frame-size value not found";
	case SPOP_ST_NO_CAP:             return "capabilities value not found";
	case SPOP_ST_BAD_VSN:            return "unsupported version";
	case SPOP_ST_BAD_FRAME_SIZE:     return "max-frame-size too big or too small";
	case SPOP_ST_FRAG_NOT_SUPPORTED: return "fragmentation not supported";
	case SPOP_ST_INTERLACED_FRAMES:  return "invalid interlaced frames";
	case SPOP_ST_FRAMEID_NOTFOUND:   return "frame-id not found";
	case SPOP_ST_RES_ALLOC:          return "resource allocation error";
	case SPOP_ST_UNKNOWN:            return "an unknown error occurred";
	}
	return "an unknown error occurred";
}

/* Returns the protocol name of a frame type byte; "unknown" otherwise. */
const char *spop_frame_type_str(unsigned type)
{
	switch (type) {
	case SPOP_FRAME_UNSET:              return "UNSET";
	case SPOP_FRAME_HAPROXY_HELLO:      return "HAPROXY-HELLO";
	case SPOP_FRAME_HAPROXY_DISCONNECT: return "HAPROXY-DISCONNECT";
	case SPOP_FRAME_NOTIFY:             return "NOTIFY";
	case SPOP_FRAME_AGENT_HELLO:        return "AGENT-HELLO";
	case SPOP_FRAME_AGENT_DISCONNECT:   return "AGENT-DISCONNECT";
	case SPOP_FRAME_ACK:                return "ACK";
	}
	return "unknown";
}
