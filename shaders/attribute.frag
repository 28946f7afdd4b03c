#version 330 core
in vec3 v_attr;
out vec4 frag_attr;  // alpha = 1 marks covered pixels
void main() {
    frag_attr = vec4(v_attr, 1.0);
}
