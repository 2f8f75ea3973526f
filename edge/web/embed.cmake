# Turns the chat page into a C++ source file: cmake -DINPUT=… -DOUTPUT=… -P embed.cmake
file(READ "${INPUT}" content HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${content}")
file(WRITE "${OUTPUT}"
  "// Generated from edge/web/index.html by edge/web/embed.cmake; do not edit.\n"
  "#include \"edge/web/chat_page.h\"\n\n"
  "namespace parley::edge {\nnamespace {\n"
  "constexpr unsigned char kData[] = {${bytes} 0};\n"
  "}  // namespace\n\n"
  "const std::string_view kChatPage(reinterpret_cast<const char*>(kData), sizeof(kData) - 1);\n\n"
  "}  // namespace parley::edge\n")
