; A MobileNet v2 inverted residual block. Parameters:
;   INPUT        the block's input cell
;   NB_FILTERS   output channels (the linear bottleneck)
;   EXPANSION    t: the hidden width is t x the input channels (no expansion conv when 1)
;   STRIDES      stride of the depthwise convolution
;   RESIDUAL     (defined or not) add the input to the output (stride 1, same channels)
{% if EXPANSION != 1 %}
[{{SECTION_NAME}}_expand] conv_def
Input={{INPUT}}
KernelDims=1 1
NbOutputs=$([{{INPUT}}]_NbOutputs * {{EXPANSION}})

[{{SECTION_NAME}}_bn1] bn_def
Input={{SECTION_NAME}}_expand
NbOutputs=[{{SECTION_NAME}}_expand]NbOutputs
{% set DW_INPUT %}{{SECTION_NAME}}_bn1{% endset %}
{% else %}
{% set DW_INPUT %}{{INPUT}}{% endset %}
{% endif %}

[{{SECTION_NAME}}_dw] conv_def
Input={{DW_INPUT}}
KernelDims=3 3
NbOutputs=[{{DW_INPUT}}]_NbOutputs
Stride={{STRIDES}}
Padding=1
Mapping.ChannelsPerGroup=1

[{{SECTION_NAME}}_bn2] bn_def
Input={{SECTION_NAME}}_dw
NbOutputs=[{{SECTION_NAME}}_dw]NbOutputs

[{{SECTION_NAME}}_project] conv_def
Input={{SECTION_NAME}}_bn2
KernelDims=1 1
NbOutputs={{NB_FILTERS}}

[{{SECTION_NAME}}_bn3] bn_linear_def
Input={{SECTION_NAME}}_project
NbOutputs={{NB_FILTERS}}

{% if RESIDUAL exists %}
[{{SECTION_NAME}}_sum]
Input={{SECTION_NAME}}_bn3,{{INPUT}}
Type=ElemWise
NbOutputs={{NB_FILTERS}}
Operation=Sum
{% endif %}
