;;; warren-repl.el --- The warren daemon's Scheme REPL in comint  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 The warren authors

;; Author: The warren authors
;; SPDX-License-Identifier: Apache-2.0

;; This file is not part of GNU Emacs.

;;; Commentary:

;; `warren-repl' runs `warren repl' in a comint buffer: the daemon's live Scheme image,
;; with `(workloads)', `(workload "web")', `(start! "web")', `(on "web" 'crash ...)'.
;; The CLI sees a dumb terminal, so it prints its own prompts (`warren> ', and `   ...> '
;; inside an unfinished form) and evaluates each complete form as it arrives.  Input is
;; fontified as Scheme and kept in a history ring saved in `warren-repl-history-file'.

;;; Code:

(require 'warren)
(require 'comint)
(require 'scheme)

(defcustom warren-repl-history-file
  (locate-user-emacs-file "warren-repl-history")
  "Where the input history of `warren-repl' is kept; nil keeps none."
  :type '(choice (const :tag "None" nil) file)
  :group 'warren)

(defconst warren-repl-prompt-regexp "^\\(?:warren>\\|   \\.\\.\\.>\\) "
  "What the CLI's prompts look like.")

(define-derived-mode warren-repl-mode comint-mode "Warren-REPL"
  "Major mode of the warren daemon's Scheme REPL.

\\{warren-repl-mode-map}"
  (setq comint-prompt-regexp warren-repl-prompt-regexp)
  (setq comint-prompt-read-only t)
  (setq comint-input-ignoredups t)
  (setq-local comint-use-prompt-regexp nil)
  (set-syntax-table scheme-mode-syntax-table)
  (setq-local comment-start ";")
  (setq-local comment-start-skip ";+ *")
  (setq-local font-lock-defaults
              '((scheme-font-lock-keywords
                 scheme-font-lock-keywords-1 scheme-font-lock-keywords-2)
                nil t
                (("+-*/.<>=!?$%_&~^:" . "w") (?#. "w 14"))))
  (setq-local comint-input-ring-file-name warren-repl-history-file)
  (setq-local comint-input-ring-size 1000)
  (comint-read-input-ring t)
  (add-hook 'kill-buffer-hook #'comint-write-input-ring nil t))

(defun warren-repl--sentinel (proc event)
  "Save the input history when PROC ends, and say why (EVENT)."
  (let ((buf (process-buffer proc)))
    (when (and (not (process-live-p proc)) (buffer-live-p buf))
      (with-current-buffer buf
        (comint-write-input-ring)
        (let ((inhibit-read-only t))
          (goto-char (point-max))
          (insert "\n" (propertize (format "[%s]" (string-trim event)) 'face 'shadow) "\n"))))))

;;;###autoload
(defun warren-repl (&optional context)
  "Run the Scheme REPL of CONTEXT's daemon (the local one when nil).
With a prefix argument, read the context."
  (interactive (list (if current-prefix-arg (warren-read-context) warren-context)))
  (let* ((name (warren-buffer-name "repl" context))
         (buf (get-buffer-create name)))
    (unless (comint-check-proc buf)
      (with-current-buffer buf
        (unless (derived-mode-p 'warren-repl-mode)
          (warren-repl-mode))
        (setq-local warren-context context)
        (let ((process-connection-type t))
          (apply #'make-comint-in-buffer (substring name 1 -1) buf warren-executable nil
                 (warren--arguments '("repl") context)))
        (set-process-sentinel (get-buffer-process buf) #'warren-repl--sentinel)))
    (pop-to-buffer buf)
    buf))

(provide 'warren-repl)
;;; warren-repl.el ends here
