; A ResNet basic block (He et al. 2016, "v1.5" as torchvision): two 3x3 convolutions, each
; followed by a BatchNorm, added to the shortcut, then ReLU. Parameters:
;   INPUT                 the block's input cell
;   NB_FILTERS            output channels
;   STRIDES               stride of the first convolution (and of the projection)
;   PROJECTION_SHORTCUT   (defined or not) 1x1 convolution + BatchNorm on the shortcut, for
;                         blocks that change the size or the number of channels
[{{SECTION_NAME}}_conv1] conv_def
Input={{INPUT}}
KernelDims=3 3
NbOutputs={{NB_FILTERS}}
Stride={{STRIDES}}
Padding=1

[{{SECTION_NAME}}_bn1] bn_def
Input={{SECTION_NAME}}_conv1
NbOutputs={{NB_FILTERS}}

[{{SECTION_NAME}}_conv2] conv_def
Input={{SECTION_NAME}}_bn1
KernelDims=3 3
NbOutputs={{NB_FILTERS}}
Stride=1
Padding=1

[{{SECTION_NAME}}_bn2] bn_def
Input={{SECTION_NAME}}_conv2
NbOutputs={{NB_FILTERS}}
ActivationFunction=Linear

{% if PROJECTION_SHORTCUT exists %}
[{{SECTION_NAME}}_proj] conv_def
Input={{INPUT}}
KernelDims=1 1
NbOutputs={{NB_FILTERS}}
Stride={{STRIDES}}
Padding=0

[{{SECTION_NAME}}_proj_bn] bn_def
Input={{SECTION_NAME}}_proj
NbOutputs={{NB_FILTERS}}
ActivationFunction=Linear
{% set INPUT %}{{SECTION_NAME}}_proj_bn{% endset %}
{% endif %}

[{{SECTION_NAME}}_sum]
Input={{SECTION_NAME}}_bn2,{{INPUT}}
Type=ElemWise
NbOutputs={{NB_FILTERS}}
Operation=Sum
ActivationFunction=Rectifier
