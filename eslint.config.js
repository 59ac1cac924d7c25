import js from '@eslint/js'
import tseslint from 'typescript-eslint'

export default tseslint.config(
  {ignores: ['dist/', 'node_modules/', 'test-artifacts/']},
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', {argsIgnorePattern: '^_'}],
      'no-console': 'off',
    },
  },
  {
    files: ['bin/*.js', 'eslint.config.js', '.mocharc.cjs'],
    languageOptions: {globals: {process: 'readonly', console: 'readonly', module: 'writable'}},
  },
)
