"""Processors calibc runs in place of a model's own while it is installed (models.py,
`Model.replacement`), where the model's own cannot be stepped into.

Mochi 1's processor attends per batch element over the video and that element's valid text only
(gathered with torch.nonzero: a host synchronisation and a sequence length that changes from
prompt to prompt), then pads the output back with zeros. `MochiJointProcessor` computes the same
projections, norms and rotary embedding, then makes one attention call over the whole padded
sequence, (B, H, video + 256, D), with the text mask as a boolean key mask: padded keys take no
part, as when they are dropped; padded rows are set to zeros, as Mochi's padding leaves them.
calibc's hooks step into that call like any other (text lengths from the key mask).
"""

import torch
from diffusers.models import attention_processor

__all__ = ["MochiJointProcessor"]


def _rotate(x, cos, sin):
    """Mochi's rotary embedding: interleaved pairs, in float32."""
    even, odd = x[..., 0::2].float(), x[..., 1::2].float()
    return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2).to(x.dtype)


class MochiJointProcessor:
    def __call__(self, attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb=None):
        heads = attn.heads
        query, key, value = (f(hidden_states).unflatten(2, (heads, -1)) for f in (attn.to_q, attn.to_k, attn.to_v))
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        text_query, text_key, text_value = (f(encoder_hidden_states).unflatten(2, (heads, -1))
                                            for f in (attn.add_q_proj, attn.add_k_proj, attn.add_v_proj))
        if attn.norm_added_q is not None:
            text_query = attn.norm_added_q(text_query)
        if attn.norm_added_k is not None:
            text_key = attn.norm_added_k(text_key)
        if image_rotary_emb is not None:
            query, key = _rotate(query, *image_rotary_emb), _rotate(key, *image_rotary_emb)
        video, text = query.shape[1], text_query.shape[1]
        # [video, text] on the sequence axis, heads second: the call Mochi makes per element.
        query, key, value = (torch.cat([a, b], dim=1).transpose(1, 2)
                             for a, b in ((query, text_query), (key, text_key), (value, text_value)))
        valid = torch.cat([attention_mask.new_ones(attention_mask.shape[0], video), attention_mask], dim=1).bool()
        # attention_processor's F, the one calibc's hooks replace (models.py), as Mochi's own processor calls.
        out = attention_processor.F.scaled_dot_product_attention(query, key, value, attn_mask=valid[:, None, None, :], dropout_p=0.0,
                                             is_causal=False)
        out = (out.transpose(1, 2) * valid[:, :, None, None]).flatten(2, 3)
        hidden_states, encoder_hidden_states = out.split_with_sizes((video, text), dim=1)
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if hasattr(attn, "to_add_out"):
            encoder_hidden_states = attn.to_add_out(encoder_hidden_states)
        return hidden_states, encoder_hidden_states
