#version 330 core
// Depth-only pass from the key light (orthographic), for the hard shadow.
uniform mat4 light_matrix;
in vec3 in_pos;
void main() {
    gl_Position = light_matrix * vec4(in_pos, 1.0);
}
