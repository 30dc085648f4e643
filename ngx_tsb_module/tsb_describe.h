
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * The effective policy of a location as JSON (tsb_describe.c).
 */


#ifndef _TSB_DESCRIBE_H_INCLUDED_
#define _TSB_DESCRIBE_H_INCLUDED_


#include "tsb_common.h"
#include "tsb_policy.h"


/*
 * {"signKeyName", "names": [{"pattern", "kind"}], "sanTypes", "maxSans",
 *  "subject": [{"attribute", "values": [{"value", "kind"}]}],
 *  "keyUsage": {"allowed", "default"}, "extendedKeyUsage": {...},
 *  "certificateAuthority": {"allowed", "maxPathLen"?}, "keys": {...},
 *  "signatureAlgorithm", "signatureAlgorithms", "keyPassword"}
 * from a policy whose name patterns are already expanded for the client.
 * Returns 0, or -1 when out of memory; out is NUL-terminated.
 */
int tsb_policy_describe(const tsb_policy_t *policy, tsb_buf_t *out);


#endif /* _TSB_DESCRIBE_H_INCLUDED_ */
