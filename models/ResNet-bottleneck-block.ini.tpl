; A ResNet bottleneck block (v1.5 as torchvision: the stride is on the 3x3 convolution):
; 1x1 (NB_FILTERS) -> 3x3 (NB_FILTERS, STRIDES) -> 1x1 (4 x NB_FILTERS), each followed by a
; BatchNorm, added to the shortcut, then ReLU. Parameters as ResNet-basic-block.ini.tpl.
[{{SECTION_NAME}}_conv1] conv_def
Input={{INPUT}}
KernelDims=1 1
NbOutputs={{NB_FILTERS}}
Stride=1
Padding=0

[{{SECTION_NAME}}_bn1] bn_def
Input={{SECTION_NAME}}_conv1
NbOutputs={{NB_FILTERS}}

[{{SECTION_NAME}}_conv2] conv_def
Input={{SECTION_NAME}}_bn1
KernelDims=3 3
NbOutputs={{NB_FILTERS}}
Stride={{STRIDES}}
Padding=1

[{{SECTION_NAME}}_bn2] bn_def
Input={{SECTION_NAME}}_conv2
NbOutputs={{NB_FILTERS}}

[{{SECTION_NAME}}_conv3] conv_def
Input={{SECTION_NAME}}_bn2
KernelDims=1 1
NbOutputs=$(4 * {{NB_FILTERS}})
Stride=1
Padding=0

[{{SECTION_NAME}}_bn3] bn_def
Input={{SECTION_NAME}}_conv3
NbOutputs=$(4 * {{NB_FILTERS}})
ActivationFunction=Linear

{% if PROJECTION_SHORTCUT exists %}
[{{SECTION_NAME}}_proj] conv_def
Input={{INPUT}}
KernelDims=1 1
NbOutputs=$(4 * {{NB_FILTERS}})
Stride={{STRIDES}}
Padding=0

[{{SECTION_NAME}}_proj_bn] bn_def
Input={{SECTION_NAME}}_proj
NbOutputs=$(4 * {{NB_FILTERS}})
ActivationFunction=Linear
{% set INPUT %}{{SECTION_NAME}}_proj_bn{% endset %}
{% endif %}

[{{SECTION_NAME}}_sum]
Input={{SECTION_NAME}}_bn3,{{INPUT}}
Type=ElemWise
NbOutputs=$(4 * {{NB_FILTERS}})
Operation=Sum
ActivationFunction=Rectifier
