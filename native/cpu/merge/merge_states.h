// Exact merge of attention results over disjoint key sets, from their (out, lse) pairs.
#pragma once
#include "../../core/validate.h"

namespace attnkit {

void merge_attention_states_cpu(const MergeRequest& r);

}  // namespace attnkit
